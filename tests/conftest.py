"""Shared fixtures: tiny seeded Llama models and a tiny byte-level BPE tokenizer, built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

# The first 500 records of GSM8K's train split, shipped in the repository (MIT; data/gsm8k/LICENSE), so a clone
# alone runs the tests. Tests that need the file's full size build it from these records.
GSM8K = Path(__file__).resolve().parents[1] / "data" / "gsm8k" / "train-sample.jsonl"
GSM8K_SAMPLE_SIZE = 500

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May.",
    "Weng earns 12/60 = $0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = $10.",
    "The answer is 72. So the total is 10 apples and 3 pears, which makes 13 fruits.",
    "Betty has only 100 / 2 = $50. Her grandparents gave her 15 * 2 = $30.",
]


def make_tokenizer(chat_template: str | None = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>" if chat_template else "<|endoftext|>", pad_token="<|endoftext|>"
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


def make_model(vocab_size: int, seed: int = 0, dtype=torch.float64, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(dtype).eval()
    # Random init is near-uniform; sharpen the head so log-probs differ enough to give a non-trivial order.
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_pruner(tiny_tokenizer):
    from chainprune.models import LoadedModel

    return LoadedModel(model=make_model(len(tiny_tokenizer)), tokenizer=tiny_tokenizer, name="tiny-llama")


def gsm8k_records(n: int) -> list[dict]:
    """The first `n` records of the shipped GSM8K train sample."""
    if n > GSM8K_SAMPLE_SIZE:
        raise ValueError(f"the shipped GSM8K sample has {GSM8K_SAMPLE_SIZE} records, not {n}")
    with GSM8K.open() as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


@pytest.fixture(scope="session")
def bundled_pruner():
    from chainprune.models import load_model

    return load_model("smollm2-135m", dtype="float32", device="cpu")


# ---- viewer (issue 8) ----


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives the HTML viewer in headless Chromium; skipped, with the reason, when none is installed"
    )


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_pruner):
    """The tiny pruner saved as a local model folder (what `--model DIR` loads)."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_pruner.model.save_pretrained(path)
    tiny_pruner.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny float32 model saved as a local folder, as a student or pruner of the experiment grid loads it."""
    folder = tmp_path_factory.mktemp("tiny-model")
    make_model(len(tiny_tokenizer), dtype=torch.float32).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return str(folder)
