"""Supervised fine-tuning of a student on chains: TRL's `SFTTrainer`, LoRA through PEFT or full fine-tuning.

Each chain becomes a *prompt-completion* example: the prompt is the task's conversation (system prompt and
question) and the completion the assistant turn (reasoning, a newline, the answer line), both rendered by
the student's own chat template. TRL tokenizes the pair and, with `completion_only_loss`, sets the labels of
every prompt token to -100, so the loss is on the response only (the assistant turn's end token included:
the student learns to stop). A student without a chat template gets the plain `Question: ... Answer: `
prompt that generation uses (`chainprune.generation.render_prompt`) and its EOS after the completion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.chains import assistant_text, chat_messages
from chainprune.generation import render_prompt

TRAIN_EXTRA_HINT = "distillation needs trl and peft: pip install 'chainprune[train]'"


def require_train_extra() -> None:
    """Fail early, with the install hint, when the `train` extra is missing."""
    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{TRAIN_EXTRA_HINT} ({e})") from None


@dataclass
class SFTSettings:
    """How a student is trained. Paper (App. B.4): cosine decay, effective batch 28, 1,200 steps."""

    lora: bool = True  # False: full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    learning_rate: float = 2e-4
    steps: int = 1200  # optimizer steps
    batch_size: int = 4  # examples per forward
    grad_accum: int = 7  # forwards per optimizer step: effective batch = batch_size x grad_accum
    warmup: float = 0.03  # fraction of the steps with a linear warm-up before the cosine decay
    weight_decay: float = 0.0
    max_length: int = 1024  # longer examples are cut (the response's end is then lost: keep it above your chains)
    save_steps: int = 200  # a checkpoint every N steps (and at the end); the best is chosen by dev accuracy
    seed: int = 0
    gradient_checkpointing: bool = False  # saves memory on GPU at the price of speed

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum

    def validate(self) -> None:
        for name in ("lora_r", "lora_alpha", "steps", "batch_size", "grad_accum", "max_length", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")


@dataclass
class TrainResult:
    checkpoints: list[tuple[int, Path]]  # (step, folder), in step order
    log_history: list[dict[str, Any]]  # the trainer's log records (loss, learning rate, ... per logged step)
    trainable_parameters: int
    total_parameters: int
    examples: int
    seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)


def sft_example(tokenizer: Any, system: str | None, question: str, reasoning: str, answer: str) -> dict[str, Any]:
    """One prompt-completion SFT example in the student's chat template (see the module docstring)."""
    completion = assistant_text(reasoning.strip(), answer.strip())
    if getattr(tokenizer, "chat_template", None):
        return {"prompt": chat_messages(tokenizer, system, question),
                "completion": [{"role": "assistant", "content": completion}]}
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return {"prompt": render_prompt(tokenizer, messages), "completion": completion}


def build_trainer(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], settings: SFTSettings, out_dir: Path,
                  on_log: Callable[[dict[str, Any]], None] | None = None, progress_bar: bool = True) -> Any:
    """A TRL `SFTTrainer` ready to `train()`: prompt-completion data with the prompt masked from the loss,
    LoRA adapters on `target_modules` (or every weight trainable), cosine schedule, checkpoints every
    `save_steps` in `out_dir/checkpoint-STEP`."""
    require_train_extra()
    settings.validate()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    if not examples:
        raise ValueError("no training examples")
    if tokenizer.pad_token is None:  # the collator pads batches
        tokenizer.pad_token = tokenizer.eos_token
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    args = SFTConfig(
        output_dir=str(out_dir),
        max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=int(settings.warmup * settings.steps),  # rounded down: a short run gets no dead first step
        weight_decay=settings.weight_decay,
        max_length=settings.max_length,
        completion_only_loss=True,  # labels of prompt tokens are -100
        save_strategy="steps",
        save_steps=settings.save_steps,
        logging_steps=1,
        report_to=[],
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=device.type == "cpu",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        activation_checkpointing=settings.gradient_checkpointing,
        gradient_checkpointing=None,  # the deprecated alias; TRL's default (True) would override
        disable_tqdm=not progress_bar,
    )
    peft_config = None
    if settings.lora:
        peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                                 target_modules=settings.target_modules, task_type="CAUSAL_LM")
    callbacks = []
    if on_log is not None:

        class _Forward(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ARG002 - TRL's signature
                on_log(dict(logs or {}, step=state.global_step))

        callbacks.append(_Forward())
    model.train()
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(list(examples)),
                      processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)


def checkpoints_in(out_dir: Path) -> list[tuple[int, Path]]:
    """The `checkpoint-STEP` folders the trainer saved in `out_dir`, in step order."""
    found = []
    for path in Path(out_dir).glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    return sorted(found)


def distill(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], settings: SFTSettings, out_dir: Path,
            resume: bool = True, on_log: Callable[[dict[str, Any]], None] | None = None,
            progress_bar: bool = True) -> TrainResult:
    """Fine-tune `model` on `examples` (from `sft_example`), saving checkpoints in `out_dir`. With `resume`,
    training continues from the last checkpoint there (optimizer, schedule and data order restored)."""
    import time

    started = time.perf_counter()
    out_dir = Path(out_dir)
    trainer = build_trainer(model, tokenizer, examples, settings, out_dir, on_log, progress_bar)
    last = checkpoints_in(out_dir)
    trainer.train(resume_from_checkpoint=str(last[-1][1]) if resume and last else None)
    if not checkpoints_in(out_dir) or checkpoints_in(out_dir)[-1][0] != trainer.state.global_step:
        trainer.save_model(str(out_dir / f"checkpoint-{trainer.state.global_step}"))
    trained = trainer.model
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trained.parameters())
    history = list(trainer.state.log_history)
    losses = [(int(r["step"]), float(r["loss"])) for r in history if "loss" in r]
    return TrainResult(checkpoints_in(out_dir), history, trainable, total, len(examples),
                       time.perf_counter() - started, losses)
