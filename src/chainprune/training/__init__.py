"""Student distillation: SFT examples from (pruned) chains, and supervised fine-tuning through TRL.

`sft_example` turns one chain into a prompt/completion pair in the student's own chat template; `distill`
wraps TRL's `SFTTrainer` (LoRA through PEFT, or full fine-tuning) and saves checkpoints. This package knows
messages, tokenizers and models; it reads and writes no JSONL and picks no checkpoint (the distill pipeline
does, by dev accuracy). trl and peft are imported only when training starts (`pip install 'chainprune[train]'`).
"""

from chainprune.training.sft import SFTSettings, TrainResult, distill, require_train_extra, sft_example

__all__ = ["SFTSettings", "TrainResult", "distill", "require_train_extra", "sft_example"]
