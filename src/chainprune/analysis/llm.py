"""LLM calls for the analyses: JSON replies from any OpenAI-compatible endpoint, validated, retried, cached.

`JsonLLM.ask(messages, schema, validate)` sends a chat request asking for JSON under `schema`, parses the reply,
runs `validate` on it (which raises ValueError when the reply is unusable), and retries on transport errors and
invalid replies. Validated replies are cached on disk under a key made of everything that determines the
request (endpoint model, messages, schema, temperature), so reruns and resumed runs cost nothing.
`LLMAnnotator` labels tokens with the functional categories of `chainprune.analysis.categories`.
The `openai` package is imported lazily (install the `openai` extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chainprune.analysis.categories import CATEGORIES, DESCRIPTIONS, PRIORITY, WORD, spread_to_tokens


class LLMError(RuntimeError):
    """No usable reply after every retry; says what the last attempt got wrong."""


class JsonLLM:
    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        retries: int = 3,
        cache: Path | None = None,
        temperature: float | None = None,
        timeout: float = 120.0,
        backoff: float = 1.0,
        client: Any = None,
    ):
        self.model, self.retries, self.temperature, self.backoff = model, retries, temperature, backoff
        self.cache = Path(cache) if cache else None
        self.requests = 0  # requests actually sent (cache hits excluded)
        if client is None:
            try:
                import openai
            except ImportError:
                raise ImportError("LLM annotation and judging need the openai package: pip install 'chainprune[openai]'") from None
            # Retries are ours (they also cover invalid replies); the client's own are off.
            client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "unused",
                                   max_retries=0, timeout=timeout)
        self.client = client

    def _key(self, messages: Sequence[dict], schema: dict) -> str:
        blob = json.dumps({"model": self.model, "messages": list(messages), "schema": schema,
                           "temperature": self.temperature}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_file(self, key: str) -> Path | None:
        return self.cache / key[:2] / f"{key}.json" if self.cache else None

    def ask(self, messages: Sequence[dict], schema: dict, validate: Callable[[Any], Any], name: str = "reply") -> Any:
        """The validated JSON reply (from the cache when this exact request was answered before)."""
        path = self._cache_file(self._key(messages, schema))
        if path is not None and path.exists():
            try:
                return validate(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, json.JSONDecodeError):
                path.unlink()  # a stale or damaged entry: ask again
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                content = self._send(messages, schema, name)
                reply = json.loads(content)
                result = validate(reply)
            except json.JSONDecodeError as e:
                problem = f"reply is not valid JSON ({e.msg})"
                continue
            except ValueError as e:
                problem = f"invalid reply: {e}"
                continue
            except Exception as e:  # transport and API errors of the openai client
                if type(e).__module__.split(".")[0] != "openai":
                    raise
                problem = f"{type(e).__name__}: {e}"
                continue
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(reply, ensure_ascii=False), encoding="utf-8")
                tmp.replace(path)
            return result
        raise LLMError(f"no usable reply after {self.retries + 1} attempt(s); last: {problem}")

    def _send(self, messages: Sequence[dict], schema: dict, name: str) -> str:
        self.requests += 1
        extra = {} if self.temperature is None else {"temperature": self.temperature}
        response = self.client.chat.completions.create(
            model=self.model,
            messages=list(messages),
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
            **extra,
        )
        content = response.choices[0].message.content if response.choices else None
        if not content:
            raise ValueError("empty reply")
        return content


ANNOTATOR_SYSTEM = (
    "You are a careful linguistic annotator of step-by-step math reasoning. You label every token of a "
    "reasoning trace with its functional role, following the category definitions exactly, and you answer "
    "with JSON only."
)


def annotator_prompt(token_texts: Sequence[str]) -> str:
    categories = "\n".join(f"- {c}: {DESCRIPTIONS[c]}" for c in CATEGORIES)
    tokens = "\n".join(f"{k}\t{json.dumps(t, ensure_ascii=False)}" for k, t in enumerate(token_texts))
    return (
        "Assign each token below exactly one functional category.\n\n"
        f"Categories:\n{categories}\n\n"
        "Rules: all sub-word pieces of one word get the same category. When a token fits several categories, "
        f"take the first in this priority order: {' > '.join(CATEGORIES)}. Whitespace-only tokens are Grammar.\n\n"
        f"Tokens (index, tab, JSON string), {len(token_texts)} in all:\n{tokens}\n\n"
        f'Answer as {{"categories": [...]}} with exactly {len(token_texts)} category names, one per token, in order.'
    )


def annotator_schema() -> dict:
    return {
        "type": "object",
        "properties": {"categories": {"type": "array", "items": {"type": "string", "enum": list(CATEGORIES)}}},
        "required": ["categories"],
        "additionalProperties": False,
    }


def parse_categories(reply: Any, count: int) -> list[str]:
    if not isinstance(reply, dict) or not isinstance(reply.get("categories"), list):
        raise ValueError('expected {"categories": [...]}')
    labels = reply["categories"]
    if len(labels) != count:
        raise ValueError(f"{len(labels)} categories for {count} tokens")
    unknown = sorted({str(c) for c in labels if c not in PRIORITY})
    if unknown:
        raise ValueError(f"unknown categories {', '.join(unknown)}")
    return labels


def share_within_words(token_texts: Sequence[str], categories: Sequence[str]) -> list[str]:
    """Enforce the word constraint on per-token labels: each word takes the highest-priority label among its
    tokens, and every token of it follows (whitespace-only tokens become Grammar)."""
    bounds, offset = [], 0
    for piece in token_texts:
        bounds.append((offset, offset + len(piece)))
        offset += len(piece)
    text = "".join(token_texts)
    spans = []
    for m in WORD.finditer(text):
        overlapping = [categories[k] for k, (s, e) in enumerate(bounds) if s < m.end() and m.start() < e]
        spans.append((m.start(), m.end(), m.group(), min(overlapping, key=PRIORITY.get)))
    return spread_to_tokens(token_texts, spans)


class LLMAnnotator:
    """Functional categories from an LLM (the paper used gpt-5-mini), one request per chain."""

    def __init__(self, model: str = "gpt-5-mini", base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 retries: int = 3, cache: Path | None = None, llm: JsonLLM | None = None, **client_options: Any):
        self.llm = llm or JsonLLM(model, base_url, api_key_env, retries, cache, **client_options)

    def __call__(self, token_texts: Sequence[str]) -> list[str]:
        if not token_texts:
            return []
        messages = [{"role": "system", "content": ANNOTATOR_SYSTEM},
                    {"role": "user", "content": annotator_prompt(token_texts)}]
        labels = self.llm.ask(messages, annotator_schema(), lambda r: parse_categories(r, len(token_texts)), "categories")
        return share_within_words(token_texts, labels)
