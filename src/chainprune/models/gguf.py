"""Any GGUF file as a model: dequantized once by transformers (`gguf_file=`) into a safetensors folder in the
cache, so later loads take seconds.

A converted folder is keyed by the file's content (its sha256) and the dtype it is stored in, so a changed file
is converted again and two paths to one file share a folder. A conversion writes into a staging folder beside its
target and renames it into place only when complete: a killed conversion leaves no folder that passes for a
model. This module knows GGUF files and the cache; not model names, packages or where a file came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from chainprune import choices

GGUF_MAGIC = b"GGUF"
STORE_DTYPES = {name: getattr(torch, name) for name in choices.STORE_DTYPES}
SOURCE_FILE = "chainprune-source.json"  # what a converted folder was made from, written last


class GgufError(ValueError):
    """A GGUF file that cannot become a model: not GGUF, unsupported, or no room to convert it."""


def check_gguf(path: Path) -> None:
    """Refuse a file that is missing or does not start with GGUF's magic bytes."""
    if not path.is_file():
        raise GgufError(f"{path}: no such file")
    with path.open("rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise GgufError(f"{path}: not a GGUF file (it starts with {head!r}, a GGUF file with {GGUF_MAGIC!r})")


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_key(path: Path, cache: Path) -> str:
    """The file's sha256, remembered per (path, size, mtime) so a large file is hashed once, not at every load."""
    stat = path.stat()
    index_path = cache / "gguf-hashes.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if stamp not in index:
        index[stamp] = sha256_file(path)
        cache.mkdir(parents=True, exist_ok=True)
        staging = index_path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(index, indent=0))
        os.replace(staging, index_path)
    return index[stamp]


def describe(path: Path) -> tuple[str, int]:
    """(architecture, number of weights) from the file's header, without dequantizing anything."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as e:  # the gguf package raises several kinds on a damaged header
        raise GgufError(f"{path}: cannot read its GGUF header ({type(e).__name__}: {e})") from None
    field = reader.fields.get("general.architecture")
    architecture = bytes(field.parts[field.data[0]]).decode() if field is not None else "unknown"
    weights = sum(int(t.n_elements) for t in reader.tensors)
    return architecture, weights


def supported_architectures() -> set[str]:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"}  # those two are sections, not architectures


def check_disk(target_parent: Path, needed: int) -> None:
    target_parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target_parent).free
    if free < needed:
        raise GgufError(
            f"converting needs about {needed / 2**30:.1f} GiB free in {target_parent}, which has "
            f"{free / 2**30:.1f} GiB; free some space, point CHAINPRUNE_CACHE elsewhere, or store bfloat16"
        )


def convert(gguf: Path, target: Path, store_dtype: str = "float32", name: str | None = None) -> Path:
    """Dequantize `gguf` into a safetensors folder at `target` (model, tokenizer, config); return `target`.

    Nothing is done when `target` is already complete. `name` becomes the model's `name_or_path`."""
    if (target / SOURCE_FILE).exists():
        return target
    if store_dtype not in STORE_DTYPES:
        raise GgufError(f"unknown store dtype {store_dtype!r}; choose one of {', '.join(STORE_DTYPES)}")
    check_gguf(gguf)
    architecture, weights = describe(gguf)
    if architecture not in supported_architectures():
        raise GgufError(
            f"{gguf}: transformers cannot load GGUF models of architecture {architecture!r} "
            f"(it can: {', '.join(sorted(supported_architectures()))})"
        )
    itemsize = torch.empty((), dtype=STORE_DTYPES[store_dtype]).element_size()
    check_disk(target.parent, int(weights * itemsize * 1.05) + (64 << 20))
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _dequantize_into(gguf, staging, STORE_DTYPES[store_dtype], name or gguf.stem)
        (staging / SOURCE_FILE).write_text(json.dumps(
            {"gguf": str(gguf), "architecture": architecture, "weights": weights, "store_dtype": store_dtype}, indent=1))
        os.replace(staging, target)  # atomic: complete, or not there
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / SOURCE_FILE).exists():
            raise
    return target


def _dequantize_into(gguf: Path, folder: Path, dtype: torch.dtype, name: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    except (ValueError, NotImplementedError, KeyError) as e:
        raise GgufError(f"{gguf}: transformers could not dequantize it ({type(e).__name__}: {e})") from None
    finally:
        hf_logging.enable_progress_bar()
    # The weights are dequantized on load; the saved folder is a plain (unquantized) checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = name
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
