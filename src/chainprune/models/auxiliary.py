"""Loading what the baselines need besides the pruner: a tokenizer alone (the student's, or the pruner's for
`match`) and LLMLingua-2's token classifier for TokenSkip. Like `models/__init__`, the only from_pretrained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE
from chainprune.models import model_source, resolve_device, resolve_dtype


def load_tokenizer(name_or_path: str) -> Any:
    """A fast tokenizer from a named tokenizer (`llama-2`, `mistral-7b-v0.3`, `llama-3.1`, `qwen2.5`, built by
    `make tokenizers`), an offline model name (`smollm2-135m`), a `.gguf` file, a local folder, a
    `tokenizer.json` file, or a hub id."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from chainprune.models.offline import TOKENIZERS, NotFetched, named_tokenizer_dir

    path = Path(name_or_path)
    if path.is_file() and path.suffix == ".json":
        return PreTrainedTokenizerFast(tokenizer_file=str(path))
    source = str(named_tokenizer_dir(name_or_path)) if name_or_path in TOKENIZERS else None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source or model_source(name_or_path))
    except NotFetched:
        raise
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load a tokenizer from {name_or_path!r}: {e}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{name_or_path}: chainprune needs a fast tokenizer")
    return tokenizer


def load_token_classifier(name_or_path: str, dtype: str = DEFAULT_DTYPE, device: str = DEFAULT_DEVICE) -> tuple[Any, Any]:
    """LLMLingua-2's classifier (or any token classifier) and its fast tokenizer: (model, tokenizer)."""
    from transformers import AutoModelForTokenClassification

    torch_device = resolve_device(device)
    try:
        model = AutoModelForTokenClassification.from_pretrained(name_or_path, dtype=resolve_dtype(dtype, torch_device))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the token classifier {name_or_path!r}: {e}") from None
    return model.to(torch_device).eval(), load_tokenizer(name_or_path)
