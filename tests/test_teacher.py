"""Generation, rejection sampling (`teacher`) and zero-shot evaluation, on scripted generators and tiny models."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest
import torch

from chainprune.chains import tokenize_chain
from chainprune.data.jsonl import parse_chain
from chainprune.generation import Sample, Sampling, TransformersGenerator
from chainprune.pipelines.evaluate import EvalConfig, evaluate_examples, run_evaluate
from chainprune.pipelines.teacher import TeacherConfig, run_teacher, samples_path
from chainprune.tasks import get_task, load_examples
from conftest import GSM8K, gsm8k_records


class ScriptedGenerator:
    """Answers question i with the scripted responses for it (cycled to n); can crash after some calls."""

    def __init__(self, tokenizer, script, crash_after_calls=None):
        self.tokenizer, self.script, self.crash_after = tokenizer, script, crash_after_calls
        self.calls = 0
        self.asked: list[str] = []

    def generate(self, conversations, sampling, seeds):
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        out = []
        for messages in conversations:
            question = messages[-1]["content"]
            self.asked.append(question)
            texts = self.script(question)
            out.append([Sample(texts[i % len(texts)], 10, True) for i in range(sampling.n)])
        return out


def write_gsm8k(tmp_path, n):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_records(n)))
    return path


def gold_of(question):
    return {r["question"]: r["answer"].rsplit("####", 1)[1].strip().replace(",", "") for r in gsm8k_records(8)}[question]


def script(question):
    """Question 0: no correct sample; others: sample 0 wrong, 1 unparsable, 2 correct (and 3 correct for odd)."""
    gold = gold_of(question)
    if question == gsm8k_records(1)[0]["question"]:
        return ["Adding up.\nThe answer is 1.", "no idea"]
    return [f"Adding up.\nThe answer is {int(gold) + 1}.", "I give up.",
            f"Adding it all up gives {gold}.\nThe answer is {gold}.", f"So it is {gold}.\n#### {gold}"]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_teacher_keeps_one_correct_sample_and_drops_the_rest(tmp_path, tiny_tokenizer):
    data = write_gsm8k(tmp_path, 5)
    out = tmp_path / "chains.jsonl"
    logged = []
    config = TeacherConfig(data_file=str(data), split="all", samples=4, batch_size=2)
    summary = run_teacher(out, config, generator=ScriptedGenerator(tiny_tokenizer, script), log=logged.append)
    chains = read(out)
    assert (summary.questions, summary.kept, summary.dropped) == (5, 4, 1)
    assert summary.acceptance_rate == pytest.approx(0.8)
    assert (summary.samples, summary.correct_samples) == (20, 8)
    assert summary.unparsable_samples == 6  # "no idea" twice in question 0, "I give up." once in each of 4 others
    assert sum("unparsable" in m for m in logged) == 6 and sum("dropped" in m for m in logged) == 1
    assert [c["id"] for c in chains] == [f"gsm8k-all-{i}" for i in range(1, 5)]
    for chain in chains:
        assert chain["sample_index"] in (2, 3) and chain["num_correct"] == 2
        assert chain["answer"].startswith(("The answer is", "####")) and chain["gold"] in chain["answer"]
        assert chain["system"] == get_task("gsm8k").system_prompt
        ids = tokenize_chain(tiny_tokenizer, parse_chain(chain))  # a pruner input record, as is
        assert "".join(ids.reasoning_texts) == chain["reasoning"]
    attempts = read(samples_path(out))
    assert [a["id"] for a in attempts] == [f"gsm8k-all-{i}" for i in range(5)]
    assert attempts[0]["chosen"] is None and attempts[0]["samples"][1]["problem"] == "no final-answer line"


def test_random_pick_is_seeded(tmp_path, tiny_tokenizer):
    data = write_gsm8k(tmp_path, 5)
    picks = []
    for seed in (0, 0, 1, 2, 3):
        out = tmp_path / f"chains-{len(picks)}.jsonl"
        run_teacher(out, TeacherConfig(data_file=str(data), split="all", samples=4, seed=seed),
                    generator=ScriptedGenerator(tiny_tokenizer, script))
        picks.append([c["sample_index"] for c in read(out)])
    assert picks[0] == picks[1]
    assert len({tuple(p) for p in picks}) > 1  # another seed picks other correct samples


def test_resume_after_a_crash_neither_repeats_nor_loses_a_question(tmp_path, tiny_tokenizer):
    data = write_gsm8k(tmp_path, 7)
    config = TeacherConfig(data_file=str(data), split="all", samples=4, batch_size=2)
    reference = tmp_path / "reference.jsonl"
    run_teacher(reference, config, generator=ScriptedGenerator(tiny_tokenizer, script))

    out = tmp_path / "chains.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_teacher(out, config, generator=ScriptedGenerator(tiny_tokenizer, script, crash_after_calls=2))
    assert len(read(samples_path(out))) == 4
    with out.open("a") as f:
        f.write('{"id": "gsm8k-all-4", "question": "half writ')  # a write cut off by the crash
    with pytest.raises(ValueError, match="--resume"):
        run_teacher(out, config, generator=ScriptedGenerator(tiny_tokenizer, script))
    generator = ScriptedGenerator(tiny_tokenizer, script)
    summary = run_teacher(out, config, resume=True, generator=generator)
    assert summary.skipped == 4 and summary.questions == 3 and len(generator.asked) == 3
    assert any("partial last line" in w for w in summary.warnings)
    attempted = Counter(a["id"] for a in read(samples_path(out)))
    assert sorted(attempted) == [f"gsm8k-all-{i}" for i in range(7)] and set(attempted.values()) == {1}
    assert read(out) == read(reference)
    again = run_teacher(out, config, resume=True, generator=ScriptedGenerator(tiny_tokenizer, script))
    assert again.questions == 0 and again.skipped == 7
    with pytest.raises(ValueError, match="samples"):
        run_teacher(out, TeacherConfig(data_file=str(data), split="all", samples=5), resume=True,
                    generator=ScriptedGenerator(tiny_tokenizer, script))


def test_bad_dataset_rows_are_reported_and_the_run_goes_on(tmp_path, tiny_tokenizer):
    data = write_gsm8k(tmp_path, 3)
    with data.open("a") as f:
        f.write(json.dumps({"question": "no answer here"}) + "\n")
    summary = run_teacher(tmp_path / "c.jsonl", TeacherConfig(data_file=str(data), split="all", samples=2),
                          generator=ScriptedGenerator(tiny_tokenizer, script))
    assert summary.questions == 3
    assert [str(f) for f in summary.failures] == ["line 4 of train.jsonl: missing field 'answer'"]


def right(question):
    return [f"Adding it all up gives {gold_of(question)}.\nThe answer is {gold_of(question)}."]


def test_evaluate_scores_and_resumes(tmp_path, tiny_tokenizer):
    data = write_gsm8k(tmp_path, 5)
    out = tmp_path / "eval.jsonl"
    config = EvalConfig(data_file=str(data), split="all", limit=3, batch_size=2)
    logged = []
    first = run_evaluate(out, config, generator=ScriptedGenerator(tiny_tokenizer, right), log=logged.append)
    assert (first.examples, first.correct) == (3, 3) and first.accuracy == 1.0
    records = read(out)
    expected_len = len(tiny_tokenizer(records[0]["reasoning"], add_special_tokens=False)["input_ids"])
    assert records[0]["reasoning_tokens"] == expected_len and first.mean_generated_tokens == 10
    config.limit = 5
    second = run_evaluate(out, config, resume=True, generator=ScriptedGenerator(tiny_tokenizer, lambda q: ["no answer"]),
                          log=logged.append)
    assert (second.examples, second.evaluated, second.skipped, second.correct, second.unparsable) == (5, 2, 3, 3, 2)
    assert second.accuracy == pytest.approx(0.6) and len(logged) == 2
    assert [r["id"] for r in read(out)] == [f"gsm8k-all-{i}" for i in range(5)]


# ---- transformers generation on a tiny seeded model ----

def conversations(n):
    task = get_task("gsm8k")
    examples, _ = load_examples(task, "all", GSM8K, limit=n)
    return [task.messages(e.question[: 20 + 15 * i]) for i, e in enumerate(examples)]  # unequal lengths


def test_left_padded_batches_decode_like_single_prompts(tiny_pruner):
    """Greedy decoding of prompts of different lengths in one left-padded batch equals decoding each alone."""
    convs = conversations(3)
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=12)
    batched = TransformersGenerator(tiny_pruner, batch_size=3).generate(convs, greedy, [0, 1, 2])
    single = TransformersGenerator(tiny_pruner, batch_size=1).generate(convs, greedy, [0, 1, 2])
    assert batched == single
    assert all(s.num_tokens > 0 for (s,) in batched)


def test_samples_are_grouped_per_prompt_and_seeded(tiny_pruner):
    convs = conversations(3)
    generator = TransformersGenerator(tiny_pruner, batch_size=3)
    greedy = generator.generate(convs, Sampling(n=1, temperature=0.0, max_new_tokens=8), [0, 1, 2])
    # At a vanishing temperature every sample is the greedy response of its own prompt.
    cold = generator.generate(convs, Sampling(n=2, temperature=1e-4, max_new_tokens=8), [0, 1, 2])
    assert [[s.text for s in group] for group in cold] == [[g.text, g.text] for (g,) in greedy]
    hot = Sampling(n=3, temperature=1.0, max_new_tokens=8)
    a, b = generator.generate(convs, hot, [5, 6, 7]), generator.generate(convs, hot, [5, 6, 7])
    c = generator.generate(convs, hot, [8, 6, 7])
    assert a == b and a != c
    assert all(len(group) == 3 for group in a)
    assert len({s.text for group in a for s in group}) > 3  # sampling, not greedy


def test_sampling_settings_are_checked():
    with pytest.raises(ValueError, match="greedy"):
        Sampling(n=2, temperature=0.0)
    with pytest.raises(ValueError, match="top-p"):
        Sampling(top_p=0.0)


def test_evaluate_examples_on_a_tiny_model(tiny_pruner):
    """A random tiny model answers nothing: every response is graded, none crashes the run."""
    task = get_task("gsm8k")
    examples, _ = load_examples(task, "all", GSM8K, limit=3)
    records = evaluate_examples(TransformersGenerator(tiny_pruner), task, examples, max_new_tokens=6)
    assert [r["id"] for r in records] == [e.id for e in examples]
    assert all(r["generated_tokens"] <= 6 and isinstance(r["correct"], bool) for r in records)


def test_cli_teacher_and_evaluate_end_to_end_with_a_tiny_model(tmp_path, tiny_pruner, tiny_tokenizer):
    from typer.testing import CliRunner

    from chainprune.cli import app

    model_dir = tmp_path / "tiny"
    # A float32 copy: converting the shared model there and back would round its weights for every later test.
    copy.deepcopy(tiny_pruner.model).to(torch.float32).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    data = write_gsm8k(tmp_path, 4)
    out = tmp_path / "chains.jsonl"
    args = ["teacher", "--model", str(model_dir), "--data-file", str(data), "--split", "all", "--samples", "2",
            "--max-new-tokens", "6", "--out", str(out), "--device", "cpu", "--limit", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "questions 3" in result.output and "acceptance rate" in result.output
    assert len(read(samples_path(out))) == 3
    result = CliRunner().invoke(app, [*args, "--resume", "--limit", "4"])
    assert result.exit_code == 0, result.output
    assert "skipped 3 already done" in result.output and len(read(samples_path(out))) == 4
    result = CliRunner().invoke(app, ["evaluate", "--model", str(model_dir), "--data-file", str(data), "--split", "all",
                                      "--max-new-tokens", "6", "--out-dir", str(tmp_path / "eval"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary[0]["examples"] == 4 and summary[0]["dataset"] == "gsm8k"
    assert len(read(tmp_path / "eval" / "tiny" / "gsm8k-all.jsonl")) == 4
    # an existing output is refused before any model loads (the model folder is gone: no load error shows)
    (tmp_path / "tiny2").mkdir()
    (tmp_path / "eval" / "tiny2").mkdir()
    (tmp_path / "eval" / "tiny2" / "gsm8k-all.jsonl").write_text('{"id": "x"}\n')
    result = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "tiny2"), "--data-file", str(data),
                                      "--split", "all", "--out-dir", str(tmp_path / "eval"), "--device", "cpu"])
    assert result.exit_code == 2 and "already exists" in result.output, result.output

    with data.open("a") as f:  # a bad row: reported with its line, the others still run, exit code 1
        f.write(json.dumps({"question": "q"}) + "\n")
    result = CliRunner().invoke(app, [*args[:-2], "--overwrite"])
    assert result.exit_code == 1, result.output
    assert "line 5 of train.jsonl: missing field 'answer'" in result.output and "questions 4" in result.output
    result = CliRunner().invoke(app, [*args, "--overwrite", "--top-p", "0"])
    assert result.exit_code == 2 and "top-p" in result.output
    result = CliRunner().invoke(app, [*args, "--overwrite", "--model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 2 and "error" in result.output


# ---- the bundled model (slow) ----

@pytest.mark.slow
def test_bundled_model_teacher_and_evaluate(tmp_path, bundled_pruner):
    data = write_gsm8k(tmp_path, 2)
    generator = TransformersGenerator(bundled_pruner, batch_size=2)
    out = tmp_path / "chains.jsonl"
    summary = run_teacher(out, TeacherConfig(data_file=str(data), split="all", samples=2, max_new_tokens=48),
                          generator=generator)
    assert summary.questions == 2 and summary.samples == 4
    assert all(len(a["samples"]) == 2 and a["samples"][0]["text"] for a in read(samples_path(out)))
    for chain in read(out):  # whatever the model got right is a valid pruner input
        tokenize_chain(bundled_pruner.tokenizer, parse_chain(chain))
    ev = run_evaluate(tmp_path / "eval.jsonl", EvalConfig(data_file=str(data), split="all", max_new_tokens=48, limit=1),
                      generator=generator)
    assert ev.examples == 1 and ev.mean_generated_tokens > 0


def test_a_sample_cut_off_at_max_new_tokens_is_never_kept(tmp_path, tiny_tokenizer):
    class CutOff(ScriptedGenerator):
        def generate(self, conversations, sampling, seeds):
            groups = super().generate(conversations, sampling, seeds)
            return [[Sample(s.text, s.num_tokens, finished=False) for s in group] for group in groups]

    data = write_gsm8k(tmp_path, 3)
    out = tmp_path / "c.jsonl"
    summary = run_teacher(out, TeacherConfig(data_file=str(data), split="all", samples=4),
                          generator=CutOff(tiny_tokenizer, script))
    assert (summary.kept, summary.truncated_samples, summary.correct_samples) == (0, 12, 0)
    assert read(out) == [] and all(a["chosen"] is None for a in read(samples_path(out)))


def test_model_generation_config_does_not_change_the_sampling(tiny_pruner):
    """A checkpoint's generation_config.json (repetition penalty, top-k, beams, ...) is ignored: the paper's
    temperature/top-p settings are applied literally."""
    convs = conversations(2)
    generator = TransformersGenerator(tiny_pruner, batch_size=2)
    greedy, hot = Sampling(n=1, temperature=0.0, max_new_tokens=10), Sampling(n=2, temperature=1.0, max_new_tokens=10)
    before = generator.generate(convs, greedy, [0, 1]), generator.generate(convs, hot, [0, 1])
    saved = tiny_pruner.model.generation_config
    try:
        tiny_pruner.model.generation_config = saved.__class__(
            repetition_penalty=5.0, top_k=2, no_repeat_ngram_size=1, num_beams=3, do_sample=True, temperature=0.1,
            min_new_tokens=9, eos_token_id=saved.eos_token_id,
        )
        after = generator.generate(convs, greedy, [0, 1]), generator.generate(convs, hot, [0, 1])
    finally:
        tiny_pruner.model.generation_config = saved
    assert after == before


# ---- chainprune's decoding loop ----

def encoded_prompts(tiny_pruner, n):
    from chainprune.generation import render_prompt

    tok = tiny_pruner.tokenizer
    return [tok(render_prompt(tok, m), add_special_tokens=False)["input_ids"] for m in conversations(n)]


def test_decoding_loop_matches_transformers_generate_greedy(tiny_pruner):
    """Left padding, positions and the cache in `decode` give exactly what `model.generate` gives (float64)."""
    from chainprune.generation import decode

    prompts = encoded_prompts(tiny_pruner, 3)
    rows = decode(tiny_pruner.model, prompts, Sampling(n=1, temperature=0.0, max_new_tokens=10), [0, 1, 2], stops=[-1])
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    expected = tiny_pruner.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=10,
                                          min_new_tokens=10, pad_token_id=0)[:, width:].tolist()
    assert rows == expected


def test_a_sample_does_not_depend_on_its_batch(tiny_pruner):
    """Each sample draws from its own generator: alone or beside other prompts, the same tokens (float64)."""
    from chainprune.generation import decode

    prompts = encoded_prompts(tiny_pruner, 3)
    hot = Sampling(n=2, temperature=1.0, max_new_tokens=8)
    together = decode(tiny_pruner.model, prompts, hot, [11, 12, 13], stops=[-1])
    alone = decode(tiny_pruner.model, prompts[1:2], hot, [12], stops=[-1])
    assert together[2:4] == alone
    assert together[2] != together[3]  # two samples of one prompt differ


def test_prompts_are_prefilled_once_and_finished_rows_leave_the_batch(tiny_pruner):
    from chainprune.generation import decode

    prompts = encoded_prompts(tiny_pruner, 2)
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=6)
    first = decode(tiny_pruner.model, prompts, greedy, [0, 1], stops=[-1])
    # a token that ends prompt 0's greedy response at step j and never occurs in prompt 1's
    j, stop = next((j, t) for j, t in enumerate(first[0]) if t not in first[1] and t not in first[0][:j])
    rows_seen = []
    model = tiny_pruner.model
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: rows_seen.append(kwargs["input_ids"].shape),
                                           with_kwargs=True)
    try:
        rows = decode(model, prompts, Sampling(n=3, temperature=1e-6, max_new_tokens=6), [0, 1], stops=[stop])
    finally:
        hook.remove()
    assert rows_seen[0][0] == 2  # the prefill: one row per prompt, not per sample
    assert [shape[0] for shape in rows_seen[1:]] == [6] * j + [3] * (5 - j)  # prompt 0's samples leave at j
    assert rows[:3] == [first[0][: j + 1]] * 3 and rows[3:] == [first[1]] * 3


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    from chainprune.generation import next_tokens

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(400, 1)
    generators = [torch.Generator().manual_seed(i) for i in range(400)]
    for top_p, support in ((0.5, {0}), (0.6, {0, 1}), (0.85, {0, 1, 2}), (1.0, {0, 1, 2})):
        drawn = set(next_tokens(logits, Sampling(n=2, temperature=1.0, top_p=top_p), generators).tolist())
        assert drawn == support, top_p
