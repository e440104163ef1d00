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

from chainprune import choices
from chainprune.chains import chat_messages
from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE
from chainprune.models import LoadedModel, load_model
from chainprune.scoring.logprobs import cache_argument

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


class TransformersGenerator:
    """Batched sampling with transformers models, by chainprune's own decoding loop (`decode`).

    Against `model.generate` it saves what generation on a CPU spends for nothing: each prompt is prefilled
    once whatever the number of samples (its cache is then repeated for them), and a sequence that ends
    leaves the batch at once instead of being computed, padded, until the longest one ends. Each sample draws
    from its own random generator, seeded from its conversation's seed and its index, so a sample does not
    depend on which conversations share its batch (up to floating-point rounding of batched matmuls)."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 8):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size  # conversations per batch (each with n samples)

    def generate(self, conversations: Sequence[Messages], sampling: Sampling, seeds: Sequence[int]) -> list[list[Sample]]:
        tokenizer = self.loaded.tokenizer
        stops = stop_token_ids(self.loaded)
        results: list[list[Sample]] = []
        for start in range(0, len(conversations), self.batch_size):
            batch = conversations[start : start + self.batch_size]
            prompts = [render_prompt(tokenizer, m) for m in batch]
            encoded = [tokenizer(p, add_special_tokens=not tokenizer.chat_template)["input_ids"] for p in prompts]
            rows = decode(self.loaded.model, encoded, sampling, seeds[start : start + self.batch_size], stops)
            for i in range(len(batch)):
                results.append([self._decode(row, stops) for row in rows[i * sampling.n : (i + 1) * sampling.n]])
        return results

    def _decode(self, row: list[int], stops: list[int]) -> Sample:
        end = next((j for j, t in enumerate(row) if t in stops), None)
        tokens = row if end is None else row[:end]
        return Sample(self.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens), end is not None)


def next_tokens(logits: torch.Tensor, sampling: Sampling, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token per row of `logits` (rows, vocab): the argmax when greedy, else a draw from the row's own
    generator after temperature and nucleus (top-p) filtering, nothing else (the paper's settings)."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        # Keep the smallest set of most likely tokens whose mass reaches top_p (at least one token).
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= sampling.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.stack([torch.multinomial(row, 1, generator=g)[0] for row, g in zip(probs, generators)])


@torch.no_grad()
def decode(model: Any, prompts: Sequence[Sequence[int]], sampling: Sampling, seeds: Sequence[int],
           stops: Sequence[int]) -> list[list[int]]:
    """Generated token ids (stop token included when one was reached) of `sampling.n` samples per prompt,
    rows grouped by prompt. Prompts are left-padded and prefilled once; their caches are repeated for the
    samples; finished rows are dropped from the batch."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    n = sampling.n
    width = max(len(ids) for ids in prompts)
    input_ids = torch.tensor([[0] * (width - len(ids)) + list(ids) for ids in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    cache_arg = {cache_argument(type(model)): cache}  # `cache` since transformers 5.x, `past_key_values` before
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                   logits_to_keep=1, **cache_arg).logits[:, -1]
    if n > 1:
        cache.batch_repeat_interleave(n)
        logits, mask, positions = (t.repeat_interleave(n, dim=0) for t in (logits, mask, positions))
    generators = [torch.Generator(device=device).manual_seed(derive_seed(seed, str(k)))
                  for seed in seeds for k in range(n)]
    outputs: list[list[int]] = [[] for _ in generators]
    active = list(range(len(generators)))  # output row of each batch row
    next_position = positions[:, -1] + 1
    stop_ids = torch.tensor(list(stops), device=device)
    for step in range(sampling.max_new_tokens):
        chosen = next_tokens(logits, sampling, [generators[r] for r in active])
        for row, token in zip(active, chosen.tolist()):
            outputs[row].append(token)
        done = torch.isin(chosen, stop_ids)
        if step + 1 == sampling.max_new_tokens or bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().flatten()
            cache.batch_select_indices(keep)
            active = [active[i] for i in keep.tolist()]
            chosen, mask, next_position = chosen[keep], mask[keep], next_position[keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        logits = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=next_position[:, None],
                       use_cache=True, **cache_arg).logits[:, -1]
        next_position = next_position + 1
    return outputs


class VLLMGenerator:
    """vLLM on GPU (optional extra `chainprune[vllm]`). Each conversation is sampled with its own seed, so
    results do not depend on batching."""

    def __init__(self, model: str, dtype: str = DEFAULT_DTYPE, **engine_args: Any):
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


BACKENDS = choices.BACKENDS


def make_generator(model: str, backend: str = "transformers", dtype: str = DEFAULT_DTYPE, device: str = DEFAULT_DEVICE,
                   batch_size: int = 8) -> Generator:
    """A generator for `model` (bundled name, local folder or hub id) on the chosen backend."""
    if backend == "transformers":
        return TransformersGenerator(load_model(model, dtype=dtype, device=device), batch_size=batch_size)
    if backend == "vllm":
        from chainprune.models import model_source

        model = model_source(model)
        return VLLMGenerator(model, dtype=dtype)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
