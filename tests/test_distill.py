"""Distillation: SFT examples, prompt masking, one optimizer step on a tiny model, and the distill pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl", reason="distillation tests need the train extra (trl, peft)")
pytest.importorskip("peft", reason="distillation tests need the train extra (trl, peft)")

from conftest import gsm8k_records, make_model  # noqa: E402

from chainprune.pipelines.distill import DistillConfig, pruned_text, run_distill  # noqa: E402
from chainprune.training import SFTSettings, sft_example  # noqa: E402
from chainprune.training.sft import build_trainer  # noqa: E402

CHAINS = [
    ("q1", "Natalia sold 48 clips in April and half as many in May. How many in all?",
     "Natalia sold 48/2 = 24 clips in May. 48+24 = 72.", "The answer is 72."),
    ("q2", "Weng earns $12 an hour. How much for 50 minutes?", "12/60 = $0.2 per minute. 0.2 x 50 = $10.",
     "The answer is 10."),
]


def test_sft_example_uses_the_students_chat_template(tiny_tokenizer):
    example = sft_example(tiny_tokenizer, "Solve.", "Q?", "  r1 r2 ", "The answer is 3.")
    assert example["prompt"] == [{"role": "system", "content": "Solve."}, {"role": "user", "content": "Q?"}]
    assert example["completion"] == [{"role": "assistant", "content": "r1 r2\nThe answer is 3."}]
    plain = sft_example(_plain_tokenizer(), "Solve.", "Q?", "r", "A")
    assert plain == {"prompt": "Solve.\n\nQuestion: Q?\nAnswer: ", "completion": "r\nA"}


def _plain_tokenizer():
    from conftest import make_tokenizer

    return make_tokenizer(chat_template=None)


def test_one_sft_step_masks_the_prompt_and_trains_only_the_adapters(tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = make_model(len(tiny_tokenizer), dtype=torch.float32)
    examples = [sft_example(tiny_tokenizer, "Solve.", q, r, a) for _, q, r, a in CHAINS]
    settings = SFTSettings(steps=1, batch_size=2, grad_accum=1, learning_rate=1e-2, warmup=0.0, save_steps=1,
                           lora_r=4, lora_alpha=8, lora_dropout=0.0)
    trainer = build_trainer(model, tiny_tokenizer, examples, settings, tmp_path, progress_bar=False)

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for row, example in enumerate(examples):
        prompt_ids = tiny_tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True,
                                                        return_dict=True)["input_ids"]
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        length = int(batch["attention_mask"][row].sum())
        assert ids[: len(prompt_ids)].tolist() == prompt_ids  # the prompt is where we think it is
        assert (labels[: len(prompt_ids)] == -100).all()  # every prompt position is out of the loss
        assert labels[len(prompt_ids) : length].tolist() == ids[len(prompt_ids) : length].tolist()  # the response is in
        assert (labels[length:] == -100).all()  # padding too
        response = tiny_tokenizer.decode(labels[len(prompt_ids) : length].tolist())
        assert response == example["completion"][0]["content"] + "<|im_end|>\n"

    peft_model = trainer.model
    before = {name: p.detach().clone() for name, p in peft_model.named_parameters()}
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    trainer.train()
    assert trainer.state.global_step == 1
    changed = {name for name, p in peft_model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert changed <= trainable  # frozen base weights untouched
    lora_b = {name for name in trainable if "lora_B" in name}
    assert lora_b and lora_b <= changed  # B starts at zero: one step with a nonzero gradient must move all of it
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert losses and all(0 < loss < 100 for loss in losses)


def test_pruned_text_names_the_problem():
    record = {"id": "a", "method": "uniform", "pruned": {"0.5": {"text": "kept"}}}
    assert pruned_text(record, 0.5, "uniform") == "kept"
    with pytest.raises(ValueError, match="pruned by 'uniform', not 'greedy'"):
        pruned_text(record, 0.5, "greedy")
    with pytest.raises(ValueError, match=r"no reasoning pruned to keep 0.7 \(has 0.5\)"):
        pruned_text(record, 0.7, "uniform")
    assert pruned_text({"id": "t", "pruned": {"0.5": {"text": "x"}}}, 0.5, "greedy") == "x"  # traces are greedy


def save_tiny(tokenizer, folder: Path) -> str:
    model = make_model(len(tokenizer), dtype=torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_run_distill_chooses_a_checkpoint_reports_bad_records_and_resumes(tiny_tokenizer, tmp_path):
    student = save_tiny(tiny_tokenizer, tmp_path / "tiny")
    chains = write_jsonl(tmp_path / "chains.jsonl",
                         [{"id": i, "question": q, "reasoning": r, "answer": a} for i, q, r, a in CHAINS])
    pruned = write_jsonl(tmp_path / "pruned.jsonl", [
        {"id": "q1", "method": "uniform", "pruned": {"0.5": {"text": "48/2 = 24 clips. 72."}}},
        {"id": "q2", "method": "uniform", "pruned": {"0.5": {"text": "12/60 = 0.2. 0.2 x 50 = 10."}}},
        {"id": "q9", "method": "uniform", "pruned": {"0.5": {"text": "no such chain"}}},
        {"id": "q3", "method": "greedy", "pruned": {"0.5": {"text": "wrong method"}}},
    ])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"id": f"d{i}", **r} for i, r in enumerate(gsm8k_records(2))])
    config = DistillConfig(student=student, keep=0.5, method="uniform", dtype="float32", device="cpu",
                           sft=SFTSettings(steps=2, batch_size=2, grad_accum=1, save_steps=1, lora_r=4, lora_alpha=8),
                           dev_split="all", dev_data_file=str(dev), dev_limit=2, max_new_tokens=4, eval_batch_size=2)
    out = tmp_path / "student"
    summary = run_distill(pruned, chains, out, config, progress_bar=False)

    assert summary.done and summary.examples == 2 and summary.steps == 2
    assert [c["step"] for c in summary.checkpoints] == [1, 2]
    assert all(c["dev_examples"] == 2 for c in summary.checkpoints)
    assert summary.chosen["step"] in (1, 2) and len(summary.losses) == 2
    problems = [str(f) for f in sorted(summary.failures, key=lambda f: f.id)]
    assert len(problems) == 2
    assert "id 'q3'" in problems[0] and "pruned by 'greedy', not 'uniform'" in problems[0]
    assert "id 'q9'" in problems[1] and "no chain with this id" in problems[1]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["chosen"]["step"] == summary.chosen["step"] and saved["best"] == str(out / "best")
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [t["completion"][0]["content"] for t in train] == ["48/2 = 24 clips. 72.\nThe answer is 72.",
                                                               "12/60 = 0.2. 0.2 x 50 = 10.\nThe answer is 10."]
    assert train[0]["prompt"][0]["role"] == "system"  # the task's system prompt when a chain has none

    # The best folder loads alone (the adapter names its base), as `chainprune evaluate --model OUT/best` does.
    from chainprune.models import load_model

    best = load_model(str(out / "best"), dtype="float32", device="cpu")
    assert any("lora_" in name for name, _ in best.model.named_parameters())

    with pytest.raises(ValueError, match="is not empty"):
        run_distill(pruned, chains, out, config, progress_bar=False)
    again = run_distill(pruned, chains, out, config, resume=True, progress_bar=False)
    assert again.done and again.chosen == summary.chosen and again.train_seconds == summary.train_seconds
    assert len(list(out.glob("checkpoint-*"))) == 2  # nothing retrained


def test_distill_command_trains_and_exits_1_on_bad_records(tiny_tokenizer, tmp_path):
    from typer.testing import CliRunner

    from chainprune.cli import app

    student = save_tiny(tiny_tokenizer, tmp_path / "tiny")
    chains = write_jsonl(tmp_path / "chains.jsonl",
                         [{"id": i, "question": q, "reasoning": r, "answer": a} for i, q, r, a in CHAINS])
    pruned = write_jsonl(tmp_path / "pruned.jsonl", [
        {"id": "q1", "method": "surprisal", "pruned": {"0.7": {"text": "48/2 = 24. 72."}}},
        {"id": "q2", "method": "surprisal", "pruned": {"0.5": {"text": "only 0.5 here"}}},
    ])
    args = ["distill", "--train", str(pruned), "--chains", str(chains), "--keep", "0.7", "--method", "surprisal",
            "--student", student, "--out", str(tmp_path / "out"), "--steps", "1", "--batch-size", "1",
            "--grad-accum", "1", "--lora-r", "2", "--dev-split", "none", "--dtype", "float32", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "best:" in result.output and "no reasoning pruned to keep 0.7" in result.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["examples"] == 1


def test_experiment_command_rejects_a_bad_config(tmp_path):
    from typer.testing import CliRunner

    from chainprune.cli import app

    config = tmp_path / "bad.yaml"
    config.write_text("methods: [greedy, nope]\n")
    result = CliRunner().invoke(app, ["experiment", str(config)])
    assert result.exit_code == 2 and "unknown method 'nope'" in result.output
