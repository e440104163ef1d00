"""The HTML viewer: one self-contained page (no network) to watch chains being pruned, step by step.

This module turns already-read trace records into a page; it knows nothing about files (the `view` pipeline
reads them) and nothing about models. The page's HTML, CSS and JavaScript are package data in
`chainprune/resources/viewer.{html,css,js}`; the data is embedded as JSON, one `<script type="application/json">`
block per example, parsed by the page only when that example is shown, so large inputs load fast.

Token text is data, never markup: the JSON is escaped so that no token can close its `<script>` block, and the
page inserts text with `textContent` only.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from itertools import accumulate
from typing import Any

from chainprune.trace_steps import check_unit_steps

# The six functional categories of the paper (section 5.1), in its tie-break priority order; the page colours
# them with fixed colours and any other category name with further ones.
KNOWN_CATEGORIES = ("SymbMath", "MetaDisc", "CoRef", "EntName", "VerbalMath", "Grammar")
# How much reasoning text the searchable index keeps per example (the list shows only its first words).
INDEX_TEXT_CHARS = 1000


@dataclass
class ViewerSource:
    """One trace file as the page shows it: a label for its column and its examples, already compacted."""

    label: str
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> viewer_example(record)


def viewer_example(record: Any) -> dict[str, Any]:
    """The compact form the page reads of one trace record; ValueError says what is wrong with it.

    Only `id` and `tokens` (each with `text` and `deleted_step`) are required; `deletion_order`,
    `objective_values`, `pruned` and a token's `category` are used when present. A unit trace (`unit` word or
    sentence) also needs its `units`; its `deletions` then count unit steps and `ends[s]` the tokens they delete.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "id" not in record:
        raise ValueError("missing field 'id'")
    if not isinstance(record["id"], (str, int)) or isinstance(record["id"], bool):
        raise ValueError(f"field 'id' must be a string or integer, got {type(record['id']).__name__}")
    tokens = record.get("tokens")
    if not isinstance(tokens, list):
        raise ValueError("missing field 'tokens'" if tokens is None else "field 'tokens' must be a list")
    texts, steps, categories = [], [], []
    for i, token in enumerate(tokens):
        if not isinstance(token, dict) or not isinstance(token.get("text"), str):
            raise ValueError(f"tokens[{i}] must be an object with a string 'text'")
        step = token.get("deleted_step")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 1):
            raise ValueError(f"tokens[{i}].deleted_step must be a positive integer or null, got {step!r}")
        category = token.get("category")
        if category is not None and not isinstance(category, str):
            raise ValueError(f"tokens[{i}].category must be a string or null, got {type(category).__name__}")
        texts.append(token["text"])
        steps.append(step)
        categories.append(category)

    deleted = sorted(s for s in steps if s is not None)
    deletions = len(deleted)
    order = record.get("deletion_order")
    unit = record.get("unit", "token")
    ends = None
    if unit != "token":
        # One step deletes a whole word or sentence: the page moves by steps and cuts keep fractions at their ends.
        if order is not None and not (isinstance(order, list) and all(isinstance(p, int) for p in order)):
            raise ValueError("field 'deletion_order' must be a list of positions")
        sizes = check_unit_steps(unit, record.get("units"), steps, order)
        deletions, ends = len(sizes), list(accumulate(sizes, initial=0))
    elif order is not None:
        if not isinstance(order, list) or len(order) != deletions:
            raise ValueError(f"deletion_order has {len(order) if isinstance(order, list) else 'no'} entries "
                             f"but {deletions} tokens have a deleted_step")
        for step, position in enumerate(order, start=1):
            if not (isinstance(position, int) and 0 <= position < len(steps) and steps[position] == step):
                raise ValueError(f"deletion_order[{step - 1}] = {position!r} disagrees with the tokens' deleted_step")
    elif deleted != list(range(1, deletions + 1)):
        raise ValueError("the tokens' deleted_step values are not 1, 2, ... each used once")

    example: dict[str, Any] = {
        "n": len(texts),
        "deletions": deletions,
        "texts": texts,
        "steps": steps,
        "objective_values": _objective_values(record.get("objective_values")),
        **_keep_fractions(record.get("pruned"), len(texts)),
        "info": {k: record[k] for k in ("objective", "pruner", "engine", "method", "mode") if record.get(k) is not None},
    }
    if ends is not None:
        example.update(unit=unit, ends=ends)  # ends[s]: tokens deleted after s steps
    if any(c is not None for c in categories):
        example["categories"] = categories
    return example


def _objective_values(values: Any) -> list[float | None] | None:
    if values is None:
        return None
    if not isinstance(values, list) or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        raise ValueError("field 'objective_values' must be a list of numbers")
    # JSON.parse has no NaN or Infinity: a non-finite value becomes a gap in the chart.
    return [float(v) if v is not None and math.isfinite(v) else None for v in values]


def _keep_fractions(pruned: Any, n: int) -> dict[str, Any]:
    """The trace's keep fractions (largest first) and, where given, how many tokens each keeps: a greedy trace
    keeps floor(n*r), a baseline matched to student lengths may keep another number, and the page follows it."""
    if pruned is None:
        return {"keeps": [], "kept_at": {}}
    if not isinstance(pruned, dict):
        raise ValueError("field 'pruned' must be an object keyed by keep fraction")
    kept_at = {}
    for key, entry in pruned.items():
        try:
            r = float(key)
        except ValueError:
            raise ValueError(f"pruned key {key!r} is not a keep fraction") from None
        if not 0.0 < r <= 1.0:
            raise ValueError(f"pruned key {key!r} is outside (0, 1]")
        kept = entry.get("num_tokens") if isinstance(entry, dict) else None
        if kept is not None:
            if not isinstance(kept, int) or isinstance(kept, bool) or not 0 <= kept <= n:
                raise ValueError(f"pruned[{key!r}].num_tokens must be an integer from 0 to {n}, got {kept!r}")
            kept_at[key] = kept
    return {"keeps": sorted(pruned, key=float, reverse=True), "kept_at": kept_at}


def render_viewer(sources: Sequence[ViewerSource], title: str = "chainprune viewer") -> str:
    """The whole page as one HTML string. Examples are listed by id in the order first met across sources."""
    if not sources:
        raise ValueError("at least one source of traces is needed")
    ids: dict[str, None] = {}
    for source in sources:
        ids.update(dict.fromkeys(source.examples))

    categories = {c for s in sources for e in s.examples.values() for c in e.get("categories", ()) if c is not None}
    category_names = [c for c in KNOWN_CATEGORIES if c in categories] + sorted(categories - set(KNOWN_CATEGORIES))
    category_index = {c: i for i, c in enumerate(category_names)}

    index, blocks = [], []
    for k, example_id in enumerate(ids):
        per_source = [s.examples.get(example_id) for s in sources]
        first = next(e for e in per_source if e is not None)
        index.append({"id": example_id, "text": "".join(first["texts"])[:INDEX_TEXT_CHARS],
                      "in": [i for i, e in enumerate(per_source) if e is not None]})
        traces = [None if e is None else _with_category_indices(e, category_index) for e in per_source]
        blocks.append(f'<script type="application/json" id="ex-{k}">{script_json({"id": example_id, "traces": traces})}</script>')

    meta = {"sources": [s.label for s in sources], "categories": category_names, "examples": index}
    page = _resource("viewer.html")
    parts = {
        "title": html.escape(title),
        "style": _inline_safe(_resource("viewer.css"), "style"),
        "script": _inline_safe(_resource("viewer.js"), "script"),
        "index": script_json(meta),
        "examples": "\n".join(blocks),
    }
    # One pass over the template only, so data that happens to contain "{{...}}" is never substituted.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], page)


def _with_category_indices(example: dict[str, Any], category_index: dict[str, int]) -> dict[str, Any]:
    if "categories" not in example:
        return example
    return example | {"categories": [None if c is None else category_index[c] for c in example["categories"]]}


_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value: Any) -> str:
    """JSON that is safe inside a `<script>` element: no `<`, `>`, `&` or line separators appear literally,
    so a token such as `</script>` or `<!--` cannot end or alter the block; JSON.parse restores them."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_ESCAPES[m.group(0)], text)


def _resource(name: str) -> str:
    return (files("chainprune") / "resources" / name).read_text(encoding="utf-8")


def _inline_safe(code: str, tag: str) -> str:
    if f"</{tag}" in code.lower():
        raise ValueError(f"viewer resource contains '</{tag}' and cannot be inlined")
    return code
