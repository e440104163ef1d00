"""Model and tokenizer loading: the only place in chainprune that calls `from_pretrained` for the pruner.

A model is named by a hub id (`Qwen/Qwen2.5-7B-Instruct`), a local Hugging Face folder, a local `.gguf` file,
or an offline name (`smollm2-135m`, the bundled default, and `qwen2.5-coder-0.5b`/`-1.5b` after `make models`;
see `models.offline`). GGUF files are converted once into a safetensors folder under the cache directory, so
later loads take seconds and need no network. `model_source` turns any of these into what `from_pretrained`
takes; every loader goes through it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_MODEL, DEVICES
from chainprune.choices import DTYPES as _DTYPE_NAMES
from chainprune.models.cache import cache_dir  # noqa: F401 - re-exported: `models.cache_dir`

DTYPES = {name: getattr(torch, name) for name in _DTYPE_NAMES}


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


def default_store_dtype(load_dtype: torch.dtype | None = None) -> str:
    """The dtype a GGUF file is converted to: $CHAINPRUNE_STORE_DTYPE (float32 or bfloat16) when set, else
    bfloat16 for a model loaded in bfloat16 or float16 (half the disk: a 1.5B model is 6.7 GB in float32), else
    float32 (exact for float32 and float64 loads)."""
    chosen = os.environ.get("CHAINPRUNE_STORE_DTYPE")
    if chosen:
        return chosen
    return "bfloat16" if load_dtype in (torch.bfloat16, torch.float16) else "float32"


def is_offline_name(name: str) -> bool:
    from chainprune.models.offline import MODELS

    return name in MODELS


def model_source(name_or_path: str | Path, store_dtype: str | None = None) -> str:
    """What `from_pretrained` should read for a model name: an offline name or a `.gguf` file becomes its
    converted folder (converting on first use); a folder or hub id stays as given. ValueError for an empty name,
    a local path that does not exist, or a name that cannot be a hub id."""
    from chainprune.models import offline

    name = str(name_or_path)
    if not name.strip():
        raise ValueError("the model name is empty")
    store = store_dtype or default_store_dtype()
    if name in offline.MODELS:
        return str(offline.named_model_dir(name, store))
    path = Path(name)
    if path.suffix == ".gguf" or path.is_file():
        from chainprune.models.gguf import check_gguf, convert

        check_gguf(path)
        return str(convert(path, offline.gguf_dir(path, store), store, name=path.stem))
    if not path.is_dir():
        check_hub_id(name)
    return name


# a hub id: "name" or "namespace/name", letters, digits, '-', '_' and '.'; not a path
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def check_hub_id(name: str) -> None:
    """ValueError for a model name that is no offline name, no local file or folder, and cannot be a hub id."""
    from chainprune.models.offline import MODELS

    if not HUB_ID.fullmatch(name):
        looks_local = name.startswith(("/", ".", "~")) or name.count("/") > 1
        problem = "no such file or folder" if looks_local else "neither a local file or folder nor a hub id"
        raise ValueError(f"model {name!r}: {problem} (offline names: {', '.join(MODELS)})")


def bundled_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The converted (float32) folder of an offline model, converting it on first use."""
    return Path(model_source(name, "float32"))


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: str = DEFAULT_DTYPE, device: str = DEFAULT_DEVICE) -> LoadedModel:
    """Load a causal LM and its tokenizer for scoring.

    `name_or_path`: an offline name (`smollm2-135m`, bundled; `qwen2.5-coder-0.5b`/`-1.5b` after `make models`),
    a local `.gguf` file, a local Hugging Face folder, or a hub id.
    `dtype`: auto (bfloat16 on CUDA, float32 on CPU), float32, float64, bfloat16 or float16.
    `device`: auto, cpu or cuda.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    path = model_source(name_or_path, default_store_dtype(torch_dtype))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:  # a folder without a model, a hub id not there (or not reachable offline)
        raise ValueError(f"cannot load model {str(name_or_path)!r}: {e}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{name_or_path}: chainprune needs a fast tokenizer (token offsets split the chain)")
    hf_logging.disable_progress_bar()  # chainprune draws its own progress; a weights bar per load is noise
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as e:
        raise ValueError(f"cannot load model {str(name_or_path)!r}: {e}") from None
    finally:
        hf_logging.enable_progress_bar()
    model.to(torch_device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name_or_path)
