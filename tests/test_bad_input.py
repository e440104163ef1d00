"""Every command meets bad input (missing files, the wrong kind of file, empty or invalid JSON, model and tokenizer
names that name nothing) with one error line naming the problem and a non-zero exit, never a traceback. No model
is loaded: each case fails before one would be."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from chainprune.cli import app

CHAIN = '{"id": "a", "question": "What is 1+1?", "reasoning": "1+1 is 2.", "answer": "2"}\n'
FILES = {"chains.jsonl": CHAIN, "text.txt": "hello world\nthis is text\n", "empty.jsonl": "", "bad.jsonl": "{not json\n"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    for name, text in FILES.items():
        (root / name).write_text(text)
    return root


def trace_readers(f: str) -> list[list[str]]:
    """Commands that read traces (or records made from them), given the file `f`."""
    return [
        ["show", f],
        ["compare", f, f],
        ["view", f, "-o", "{out}/v.html"],
        ["match", f, "--student-tokenizer", "llama-2", "-o", "{out}/m.jsonl"],
        ["lengths", f],
        ["annotate", f, "-o", "{out}/a.jsonl"],
        ["analyze", "retention", f, "-o", "{out}/r"],
        ["analyze", "dynamics", f, "-o", "{out}/d"],
        ["analyze", "judge", f, "-o", "{out}/j.jsonl"],
    ]


def data_readers(f: str) -> list[list[str]]:
    """Commands that read chains, dataset files or configs, given the file `f`."""
    return [
        ["prune", f, "-o", "{out}/p.jsonl"],
        ["baseline", "uniform", f, "--student-tokenizer", "llama-2", "-o", "{out}/b.jsonl"],
        ["teacher", "-o", "{out}/t.jsonl", "--data-file", f, "--split", "all"],
        ["evaluate", "--out-dir", "{out}/e", "--data-file", f, "--split", "all"],
        ["distill", "--chains", f, "--train", f, "-o", "{out}/dist", "--dev-split", "none"],
        ["experiment", f],
        ["models", "convert", f],
    ]


def model_users(model: str) -> list[list[str]]:
    """Commands that load a model (or a tokenizer) named `model`, given valid input."""
    return [
        ["prune", "{dir}/chains.jsonl", "-o", "{out}/p.jsonl", "--model", model],
        ["baseline", "uniform", "{dir}/chains.jsonl", "--student-tokenizer", "llama-2", "-o", "{out}/b.jsonl", "--model", model],
        ["baseline", "uniform", "{dir}/chains.jsonl", "--student-tokenizer", model, "-o", "{out}/b.jsonl"],
        ["teacher", "-o", "{out}/t.jsonl", "--data-file", "data/gsm8k/train-sample.jsonl", "--split", "all",
         "--limit", "1", "--model", model],
        ["evaluate", "--out-dir", "{out}/e", "--data-file", "data/gsm8k/train-sample.jsonl", "--split", "all",
         "--limit", "1", "--model", model],
        ["analyze", "surrogate", "--train", "{dir}/chains.jsonl", "--test", "{dir}/chains.jsonl", "-o", "{out}/s",
         "--model", model],
        ["analyze", "retention", "{dir}/chains.jsonl", "-o", "{out}/r", "--ranker", "surprisal", "--model", model],
        ["distill", "--chains", "{dir}/chains.jsonl", "--keep", "1.0", "-o", "{out}/dist", "--dev-split", "none",
         "--student", model],
    ]


def whole_file_reader(args: list[str]) -> bool:
    """Commands that refuse a file of the wrong kind as a whole; the others report each bad record and exit 1."""
    return args[0] in ("show", "compare", "view", "lengths") or args[:2] in (["analyze", "retention"], ["analyze", "dynamics"])


# (arguments, words the message must contain); {dir} holds FILES, {out} is a fresh folder
CASES = [
    *[(args, "missing.jsonl") for args in trace_readers("{dir}/missing.jsonl") + data_readers("{dir}/missing.jsonl")],
    *[(args, "empty.jsonl") for args in trace_readers("{dir}/empty.jsonl") + data_readers("{dir}/empty.jsonl")
      if args[0] not in ("compare", "view", "experiment", "models")],  # these say it their own way
    *[(args, "chains.jsonl") for args in trace_readers("{dir}/chains.jsonl")
      if whole_file_reader(args)],
    *[(args, "text.txt") for args in trace_readers("{dir}/text.txt")
      if whole_file_reader(args)],
    *[(args, "bad.jsonl") for args in trace_readers("{dir}/bad.jsonl")
      if whole_file_reader(args)],
    (["experiment", "{dir}/text.txt"], "not an experiment config"),
    (["analyze", "surrogate", "--train", "{dir}/missing.jsonl", "--test", "{dir}/chains.jsonl", "-o", "{out}/s"],
     "missing.jsonl"),
    (["models", "convert", "{dir}/text.txt"], "not a GGUF file"),
    (["models", "convert", "{dir}"], "not a .gguf file"),
    *[([*command, "{dir}"], "directory") for command in (["show"], ["lengths"], ["annotate", "-o", "{out}/a.jsonl"], ["view"], ["experiment"])],
    (["models", "fetch", "no-such-model"], "unknown name"),
    (["demo", "--out-dir", "{dir}/text.txt"], "text.txt"),
    *[(args, "empty") for args in model_users("")],
    *[(args, "/no/such/dir") for args in model_users("/no/such/dir")],
    *[(args, "not a model name") for args in model_users("not a model name")],
    *[(args, "no-such-org/no-such-model") for args in model_users("no-such-org/no-such-model")],
]


@pytest.mark.parametrize("args, named", CASES, ids=[" ".join(a).replace("{dir}/", "") for a, _ in CASES])
def test_bad_input_gives_one_named_error_and_no_traceback(args, named, folder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    args = [a.format(dir=folder, out=tmp_path) for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert named in result.output, result.output
