"""TokenSkip: LLMLingua-2's token classifier (an XLM-RoBERTa token classifier trained on GPT-4 compression
labels) gives each word of the reasoning a probability of being kept; least likely kept deleted first.

As in LLMLingua-2, the classifier reads the reasoning alone (in windows of at most its maximum length), a
word is a maximal run of non-whitespace characters, and a word's probability is the mean of p(keep) over
the classifier tokens that overlap it. Each pruner reasoning token then takes, through character offsets,
the highest probability among the words it overlaps; a token of whitespace only takes the lower of its two
neighbouring words' (so whitespace goes no later than the words around it).

Knows token classifiers and character offsets, not files. The classifier is loaded by
`chainprune.models.auxiliary.load_token_classifier` (the only from_pretrained).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch

from chainprune.ranking.base import Ranking, needs, order_by_importance
from chainprune.types import ChainIds

KEEP_LABEL = 1  # LLMLingua-2's label for "preserve this token"


@dataclass
class TokenClassifier:
    model: Any  # transformers AutoModelForTokenClassification, eval mode
    tokenizer: Any  # its fast tokenizer (offsets are needed)
    name: str


def words(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of `text`."""
    return [m.span() for m in re.finditer(r"\S+", text)]


@torch.no_grad()
def token_keep_probs(classifier: TokenClassifier, text: str) -> tuple[list[float], list[tuple[int, int]]]:
    """p(keep) of every classifier token of `text` and its character span, reading the text in windows."""
    tok = classifier.tokenizer
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    # RoBERTa-style position tables hold 2 more rows than usable positions; 2 more go to <s> and </s>.
    usable = getattr(classifier.model.config, "max_position_embeddings", 514) - 2
    limit = min(usable, getattr(tok, "model_max_length", usable) or usable) - 2
    device = next(classifier.model.parameters()).device
    probs: list[float] = []
    for start in range(0, len(ids), limit):
        window = ids[start : start + limit]
        row = [tok.cls_token_id, *window, tok.sep_token_id] if tok.cls_token_id is not None else window
        logits = classifier.model(input_ids=torch.tensor([row], device=device)).logits[0]  # (len, labels)
        p = torch.softmax(logits.double(), dim=-1)[:, KEEP_LABEL]
        if len(row) != len(window):
            p = p[1:-1]
        probs.extend(p.tolist())
    return probs, [tuple(o) for o in offsets]


def word_keep_probs(classifier: TokenClassifier, text: str) -> list[tuple[int, int, float]]:
    """(start, end, p(keep)) per word: the mean over the classifier tokens overlapping the word."""
    probs, offsets = token_keep_probs(classifier, text)
    out = []
    for a, b in words(text):
        inside = [p for p, (s, e) in zip(probs, offsets) if s < b and e > a]
        out.append((a, b, sum(inside) / len(inside) if inside else 0.0))
    return out


def spread_to_tokens(token_spans: list[tuple[int, int]], word_probs: list[tuple[int, int, float]]) -> list[float]:
    """Each token's score from the words it overlaps (see module doc for the whitespace rule)."""
    scores = []
    for a, b in token_spans:
        hit = [p for s, e, p in word_probs if s < b and e > a]
        if hit:
            scores.append(max(hit))
            continue
        before = [p for s, e, p in word_probs if e <= a]
        after = [p for s, e, p in word_probs if s >= b]
        neighbours = before[-1:] + after[:1]
        scores.append(min(neighbours) if neighbours else 0.0)
    return scores


@needs("token_classifier")
def tokenskip(ids: ChainIds, model: TokenClassifier, seed: int = 0) -> Ranking:
    """Lowest p(keep) deleted first; the score is p(keep) of the token's word."""
    texts = ids.reasoning_texts
    if len(texts) != len(ids.reasoning_ids):
        raise ValueError("tokenskip needs the reasoning token texts (tokenize the chain with tokenize_chain)")
    if not texts:
        return Ranking(deletion_order=[], scores=[])
    ends = list(accumulate(len(t) for t in texts))
    spans = [(e - len(t), e) for t, e in zip(texts, ends)]
    scores = spread_to_tokens(spans, word_keep_probs(model, "".join(texts)))
    return Ranking(deletion_order=order_by_importance(scores), scores=scores)
