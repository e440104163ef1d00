"""Units of deletion over a chain's reasoning: tokens, words, sentences or steps, as contiguous spans of tokens.

The rule is stated on characters, then carried to tokens:
- word: a run of non-whitespace characters, with the punctuation attached to it ("clips.", "(48", "$10"),
  except that the characters of an equation stand alone: a run of operator characters (`OPERATORS`) next to a
  digit, or between digits, is a word of its own, and so is the number on each side ("48/2=24" is five words:
  "48", "/", "2", "=", "24"). A number ("1,234.50") is never split.
- sentence: a run of text ending after `.`, `?` or `!` (a run of them, with closing quotes or brackets) that is
  followed by whitespace or the end of the text, or ending at a newline. "3.5" and "e.g.5" do not end one.
- step (the unit of step-level reward models): a paragraph when the text has blank lines (steps separated by
  one or more lines holding only whitespace), otherwise a line; the whitespace between steps belongs to the
  next one, as for every unit.
A token belongs to the unit holding its first non-whitespace character; a token of whitespace only belongs
to the unit of the next non-whitespace character (the last unit at the end of the text). So a token that
straddles two units (a BPE merge like "2=" or ".\\n") joins the first, units are contiguous token spans, and
every token is in exactly one unit. A unit whose every character lies inside a token of an earlier unit
disappears into it.

This module knows text and token strings, not tokenizers or models.
"""

from __future__ import annotations

import re

UNITS = ("token", "word", "sentence", "step")
OPERATORS = "+-*/=×÷^<>−"
_ENDS = ".?!"
_CLOSERS = "\"')]}”’"


def word_starts(text: str) -> list[int]:
    """For each character, the index of the word it belongs to (-1 for whitespace)."""
    index = [-1] * len(text)
    word = -1
    for match in re.finditer(r"\S+", text):
        for piece_start, piece_end in _equation_pieces(match.group()):
            word += 1
            for i in range(match.start() + piece_start, match.start() + piece_end):
                index[i] = word
    return index


def _equation_pieces(chunk: str) -> list[tuple[int, int]]:
    """Cut a whitespace-free chunk at runs of operators that touch a digit: [(start, end), ...]."""
    cuts = {0, len(chunk)}
    for match in re.finditer(f"[{re.escape(OPERATORS)}]+", chunk):
        a, b = match.span()
        before = a > 0 and chunk[a - 1].isdigit()
        after = b < len(chunk) and (chunk[b].isdigit() or (chunk[b] == "." and b + 1 < len(chunk) and chunk[b + 1].isdigit()))
        if before or after:
            cuts.update((a, b))
    bounds = sorted(cuts)
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if a < b]


def sentence_starts(text: str) -> list[int]:
    """For each character, the index of the sentence it belongs to (-1 for whitespace)."""
    index = [-1] * len(text)
    sentence, open_ = 0, False
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            if char == "\n" and open_:
                sentence, open_ = sentence + 1, False
            i += 1
            continue
        index[i], open_ = sentence, True
        if char in _ENDS:
            j = i + 1
            while j < len(text) and (text[j] in _ENDS or text[j] in _CLOSERS):
                index[j] = sentence
                j += 1
            if j == len(text) or text[j].isspace():
                sentence, open_ = sentence + 1, False
            i = j
            continue
        i += 1
    return index


def step_starts(text: str) -> list[int]:
    """For each character, the index of the step it belongs to (-1 for whitespace): paragraphs when the text
    has a blank line, else lines."""
    breaks = r"\n[ \t\r\f\v]*\n\s*" if re.search(r"\n[ \t\r\f\v]*\n", text.strip()) else r"\n\s*"
    index = [-1] * len(text)
    step, at = 0, 0
    for match in [*re.finditer(breaks, text), None]:
        end = match.start() if match is not None else len(text)
        piece = text[at:end]
        if piece.strip():
            for i in range(at, end):
                if not text[i].isspace():
                    index[i] = step
            step += 1
        if match is not None:
            at = match.end()
    return index


def check_unit(unit: str) -> None:
    """ValueError unless `unit` is one of `UNITS`."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")


def unit_spans(texts: list[str], unit: str) -> list[tuple[int, int]]:
    """Contiguous [start, end) spans of token indices, one per unit, in order, covering every token.

    `texts` are the tokens' strings, concatenating to the text (`ChainIds.reasoning_texts`)."""
    check_unit(unit)
    if unit == "token":
        return [(i, i + 1) for i in range(len(texts))]
    text = "".join(texts)
    of_char = {"word": word_starts, "sentence": sentence_starts, "step": step_starts}[unit](text)
    owners: list[int | None] = []
    offset = 0
    for piece in texts:
        owner = next((of_char[offset + k] for k, c in enumerate(piece) if not c.isspace()), None)
        owners.append(owner)
        offset += len(piece)
    # Whitespace-only tokens join the next unit; trailing ones the last.
    following = None
    for i in range(len(owners) - 1, -1, -1):
        if owners[i] is None:
            owners[i] = following
        else:
            following = owners[i]
    last = next((o for o in reversed(owners) if o is not None), 0)
    spans: list[tuple[int, int, int]] = []
    for i, owner in enumerate(o if o is not None else last for o in owners):
        if spans and spans[-1][2] == owner:
            spans[-1] = (spans[-1][0], i + 1, owner)
        else:
            spans.append((i, i + 1, owner))
    return [(a, b) for a, b, _ in spans]
