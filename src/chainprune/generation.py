"""Sampling responses from a chat model: batched transformers generation (CPU/GPU), or vLLM on GPU.

Both backends take conversations (lists of chat messages) and return, per conversation, `n` samples with
their text and token counts. This module knows chat templates and decoding, not datasets or grading.
Sampling follows the paper's settings literally: `temperature` and `top_p` only (no top-k, no repetition
penalty, whatever the model's own generation config says); temperature 0 is greedy decoding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from chainprune.chains import chat_messages
from chainprune.models import LoadedModel, load_model

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 1024

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("the number of samples must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top-p must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError("max-new-tokens must be at least 1")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("greedy decoding (temperature 0) gives one sample; ask for n=1 or a temperature > 0")


@dataclass(frozen=True)
class Sample:
    text: str
    num_tokens: int  # generated tokens, end-of-turn token excluded
    finished: bool  # False when cut off at max_new_tokens


class Generator(Protocol):
    """Anything that samples responses: `generate(conversations, sampling, seeds)` -> `n` samples per
    conversation; `seeds` has one seed per conversation (e.g. derived from the example id)."""

    tokenizer: Any

    def generate(self, conversations: Sequence[Messages], sampling: Sampling, seeds: Sequence[int]) -> list[list[Sample]]: ...


def derive_seed(seed: int, *keys: str) -> int:
    """A 31-bit seed from a base seed and keys (e.g. example ids), stable across runs and platforms."""
    digest = hashlib.sha256(":".join([str(seed), *keys]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def render_prompt(tokenizer: Any, messages: Messages) -> str:
    """The conversation (its system text and last user turn) as the model sees it, up to the start of the
    assistant's turn, in the turns `chains.chat_messages` gives: a template that rejects a system turn gets
    the system text at the start of the user turn instead."""
    if not getattr(tokenizer, "chat_template", None):
        system = "".join(m["content"] + "\n\n" for m in messages if m["role"] == "system")
        user = messages[-1]["content"]
        return f"{system}Question: {user}\nAnswer: "  # chains.PLAIN_TEMPLATE, so pruning sees the same prompt
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = chat_messages(tokenizer, system, messages[-1]["content"])  # the same turns pruning tokenizes
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def stop_token_ids(loaded: LoadedModel) -> list[int]:
    ids = loaded.model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if loaded.tokenizer.eos_token_id is not None and loaded.tokenizer.eos_token_id not in ids:
        ids.append(loaded.tokenizer.eos_token_id)
    return ids


# transformers' own defaults (GenerationConfig._get_default_generation_params in 5.x): none changes the
# distribution; set explicitly so that a model's generation_config.json cannot override them.
NEUTRAL_GENERATION = {
    "num_beams": 1, "typical_p": 1.0, "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "min_new_tokens": 0, "use_cache": True,  # min_new_tokens takes precedence over min_length
}


class TransformersGenerator:
    """Batched `model.generate` with left padding. Each batch is seeded from its conversations' seeds, so a
    result is reproducible for the same seeds, batch composition and device."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 8):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size  # conversations per generate call (each with n samples)

    def generate(self, conversations: Sequence[Messages], sampling: Sampling, seeds: Sequence[int]) -> list[list[Sample]]:
        from transformers import GenerationConfig

        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        stops = stop_token_ids(self.loaded)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
        greedy = sampling.temperature == 0
        # generate() fills every setting left unset (None) from the model's own generation_config.json, which
        # may carry a repetition penalty, top-k or beams (Qwen2.5's does). Set all of them to neutral values.
        settings = dict(NEUTRAL_GENERATION)
        settings.update(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            temperature=1.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=50 if greedy else 0,  # 0 disables top-k: sample from the whole (top-p) distribution
            num_return_sequences=sampling.n,
            eos_token_id=stops,
            pad_token_id=pad,
        )
        config = GenerationConfig(**settings)
        results: list[list[Sample]] = []
        for start in range(0, len(conversations), self.batch_size):
            batch = conversations[start : start + self.batch_size]
            prompts = [render_prompt(tokenizer, m) for m in batch]
            encoded = [tokenizer(p, add_special_tokens=not tokenizer.chat_template)["input_ids"] for p in prompts]
            width = max(len(ids) for ids in encoded)
            # Left padding keeps every prompt's last token at the same position, where generation starts.
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=self.loaded.device)
            attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=self.loaded.device)
            torch.manual_seed(derive_seed(0, *map(str, seeds[start : start + self.batch_size])))
            with torch.no_grad():
                output = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config)
            new = output[:, width:].tolist()  # (batch * n, generated), rows grouped by conversation
            for i in range(len(batch)):
                results.append([self._decode(row, stops) for row in new[i * sampling.n : (i + 1) * sampling.n]])
        return results

    def _decode(self, row: list[int], stops: list[int]) -> Sample:
        end = next((j for j, t in enumerate(row) if t in stops), None)
        tokens = row if end is None else row[:end]
        return Sample(self.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens), end is not None)


class VLLMGenerator:
    """vLLM on GPU (optional extra `chainprune[vllm]`). Each conversation is sampled with its own seed, so
    results do not depend on batching."""

    def __init__(self, model: str, dtype: str = "auto", **engine_args: Any):
        try:
            from vllm import LLM
        except ImportError as e:
            raise RuntimeError("the vllm backend needs vLLM on a CUDA machine: pip install 'chainprune[vllm]'") from e
        self.llm = LLM(model=model, dtype=dtype, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, conversations: Sequence[Messages], sampling: Sampling, seeds: Sequence[int]) -> list[list[Sample]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, params = [], []
        for messages, seed in zip(conversations, seeds, strict=True):
            text = render_prompt(self.tokenizer, messages)
            ids = self.tokenizer(text, add_special_tokens=not self.tokenizer.chat_template)["input_ids"]
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(
                SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                               max_tokens=sampling.max_new_tokens, seed=seed)
            )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            [Sample(c.text, len(c.token_ids), c.finish_reason != "length") for c in out.outputs] for out in outputs
        ]


BACKENDS = ("transformers", "vllm")


def make_generator(model: str, backend: str = "transformers", dtype: str = "auto", device: str = "auto",
                   batch_size: int = 8) -> Generator:
    """A generator for `model` (bundled name, local folder or hub id) on the chosen backend."""
    if backend == "transformers":
        return TransformersGenerator(load_model(model, dtype=dtype, device=device), batch_size=batch_size)
    if backend == "vllm":
        from chainprune.models import model_source

        model = model_source(model)
        return VLLMGenerator(model, dtype=dtype)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
