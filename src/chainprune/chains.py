"""Question/reasoning/answer -> prompt_ids, reasoning_ids, answer_ids, tokenized once in context.

The conversation [system?, user(question), assistant(reasoning + "\\n" + answer)] is rendered with the
tokenizer's chat template (or `PLAIN_TEMPLATE` when it has none) and tokenized *once*, with character
offsets. The token list is then cut in three by where each token lies relative to the reasoning's
characters, so `prompt_ids + reasoning_ids + answer_ids` is exactly the tokenization of the whole
conversation, by construction.

Boundary rule (documented, tested): `reasoning_ids` are the tokens lying wholly inside the reasoning text.
A token that straddles the start of the reasoning (e.g. a BPE merge of the template's "\\n" with the first
reasoning character) belongs to the prompt; one that straddles its end (e.g. "." merged with the "\\n"
joining reasoning and answer) belongs to the answer. Such tokens are never deletion candidates.

This module knows tokenizers, not models.
"""

from __future__ import annotations

from typing import Any

from chainprune.types import Chain, ChainIds

ANSWER_JOINER = "\n"
PLAIN_TEMPLATE = "{system}Question: {question}\nAnswer: "


class ChainError(ValueError):
    """A chain that cannot be tokenized or scored; the message says why."""


def check_fits(ids: ChainIds, limit: int | None) -> None:
    """ChainError when the tokenized chain is longer than a model's context of `limit` tokens (None: no limit)."""
    if limit is not None and len(ids.input_ids) > limit:
        raise ChainError(f"chain is {len(ids.input_ids)} tokens, longer than the pruner's context of {limit}")


def assistant_text(reasoning: str, answer: str) -> str:
    return reasoning + ANSWER_JOINER + answer if reasoning else answer


def chat_messages(tokenizer: Any, system: str | None, question: str) -> list[dict[str, str]]:
    """The prompt turns for a chat template: system (when given) and user. A template that rejects a system
    turn (Gemma's raise) gets the system text at the start of the user turn instead."""
    if not system:
        return [{"role": "user", "content": question}]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    try:
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:
        return [{"role": "user", "content": f"{system}\n\n{question}"}]
    return messages


def render(tokenizer: Any, chain: Chain) -> tuple[str, int, bool]:
    """The whole conversation as text, the character index where the reasoning starts, and whether the
    text came from a chat template (whose special tokens are written out in the text itself)."""
    reasoning, answer = chain.reasoning.strip(), chain.answer.strip()
    content = assistant_text(reasoning, answer)
    if getattr(tokenizer, "chat_template", None):
        messages = chat_messages(tokenizer, chain.system, chain.question)
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": content}], tokenize=False
        )
        # Most templates render the generation prompt as a prefix of the full conversation; search after it
        # so a reasoning that repeats the question is not found inside the user turn.
        start = full.find(content, len(head) if full.startswith(head) else 0)
        if start < 0:
            raise ChainError("the chat template altered the assistant text, so the reasoning cannot be located")
        return full, start, True
    system = f"{chain.system}\n\n" if chain.system else ""
    head = PLAIN_TEMPLATE.format(system=system, question=chain.question)
    eos = tokenizer.eos_token or ""
    return head + content + eos, len(head), False


def tokenize_chain(tokenizer: Any, chain: Chain) -> ChainIds:
    """Tokenize a chain in context and split it into prompt, reasoning and answer ids (see module doc)."""
    text, start, templated = render(tokenizer, chain)
    end = start + len(chain.reasoning.strip())
    encoding = tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    prompt, reasoning, answer, texts = [], [], [], []
    part = prompt  # the three parts are filled in order: a token never goes back to an earlier part
    for token_id, (a, b) in zip(ids, offsets):
        inside = start <= a < b <= end
        if part is prompt and inside:
            part = reasoning
        elif (part is prompt and a >= start and b > a) or (part is reasoning and not inside):
            part = answer
        part.append(token_id)
        if part is reasoning:
            texts.append(text[a:b])
    if not prompt:
        raise ChainError("the rendered prompt is empty, so the first reasoning token has no context to be scored in")
    if not answer:
        raise ChainError("the answer is empty and the template adds no end tokens: nothing to score after the reasoning")
    return ChainIds(prompt_ids=prompt, reasoning_ids=reasoning, answer_ids=answer, reasoning_texts=texts)
