"""Loading a trained student: a LoRA adapter folder (PEFT) on its base model, merged for fast generation, or
a fully fine-tuned checkpoint folder. Like `models/__init__`, a place that calls `from_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE
from chainprune.models import LoadedModel, is_offline_name, load_model, model_source

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def resolve_base(name_or_path: str) -> str:
    """What a saved adapter should name as its base: an offline model's or GGUF file's converted folder, a local folder's
    absolute path, or the hub id as given."""
    path = Path(name_or_path)
    if is_offline_name(name_or_path) or path.suffix == ".gguf":
        return model_source(name_or_path)
    return str(path.resolve()) if path.exists() else name_or_path


def set_adapter_base(path: str | Path, base: str) -> None:
    """Point a saved adapter at its base model, so any tool (`chainprune evaluate --model PATH`, transformers'
    PEFT integration) can load the folder alone."""
    config_file = Path(path) / ADAPTER_CONFIG
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = resolve_base(base)
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def load_student(path: str | Path, base: str | None = None, dtype: str = DEFAULT_DTYPE, device: str = DEFAULT_DEVICE) -> LoadedModel:
    """A student checkpoint ready to generate. An adapter folder is applied to `base` (default: the base its
    adapter_config names) and merged into it; any other folder loads as a plain model."""
    path = Path(path)
    if not is_adapter(path):
        return load_model(str(path), dtype=dtype, device=device)
    try:
        from peft import PeftModel
    except ImportError:
        raise ImportError("loading a LoRA student needs peft: pip install 'chainprune[train]'") from None
    base = base or json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}: the adapter names no base model; pass the student's base model")
    loaded = load_model(base, dtype=dtype, device=device)
    merged = PeftModel.from_pretrained(loaded.model, str(path)).merge_and_unload()
    return LoadedModel(model=merged.eval(), tokenizer=loaded.tokenizer, name=str(path))
