"""Units of deletion: the word, sentence and step rules on characters, and how tokens are assigned to units."""

from __future__ import annotations

import pytest

from chainprune.units import unit_spans


def words(texts: list[str]) -> list[str]:
    return ["".join(texts[a:b]) for a, b in unit_spans(texts, "word")]


def sentences(texts: list[str]) -> list[str]:
    return ["".join(texts[a:b]) for a, b in unit_spans(texts, "sentence")]


def steps(texts: list[str]) -> list[str]:
    return ["".join(texts[a:b]) for a, b in unit_spans(texts, "step")]


def chars(text: str) -> list[str]:
    return list(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Natalia sold 48 clips.", ["Natalia", " sold", " 48", " clips."]),
        ("48/2=24", ["48", "/", "2", "=", "24"]),  # an equation's digits and operators stand alone
        ("So 48+24 = 72 clips.", ["So", " 48", "+", "24", " =", " 72", " clips."]),
        ("a well-known $1,234.50 (total)", ["a", " well-known", " $1,234.50", " (total)"]),  # numbers never split
        ("It is -7 and 3.5.", ["It", " is", " -", "7", " and", " 3.5."]),
        ("<<48/2=24>>24", ["<<", "48", "/", "2", "=", "24", ">>", "24"]),
        ("  lead", ["  lead"]),  # leading whitespace joins the first word
        ("end  ", ["end  "]),  # trailing whitespace joins the last word
    ],
)
def test_word_rule_on_characters(text, expected):
    assert words(chars(text)) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She sold 48. Then 24! Why? Done", ["She sold 48.", " Then 24!", " Why?", " Done"]),
        ("It costs $0.2 per minute. So 3.5 hours.", ["It costs $0.2 per minute.", " So 3.5 hours."]),
        ("Line one\nLine two\n\nLine three", ["Line one", "\nLine two", "\n\nLine three"]),
        ('He said "stop." Then left.', ['He said "stop."', " Then left."]),
        ("Wait... really?!", ["Wait...", " really?!"]),
        ("e.g.5 stays", ["e.g.5 stays"]),
    ],
)
def test_sentence_rule_on_characters(text, expected):
    assert sentences(chars(text)) == expected


def test_a_token_straddling_two_units_joins_the_first():
    tokens = ["48", "/", "2=", "24", ".\n", "Then", " 5", "."]
    assert words(tokens) == ["48", "/", "2=", "24.\n", "Then", " 5."]
    # sentences: ".\n" ends the first sentence; the token keeps both characters
    assert sentences(tokens) == ["48/2=24.\n", "Then 5."]


def test_subword_pieces_of_one_word_stay_together_and_spans_cover_every_token():
    tokens = ["Nat", "alia", " sold", " ", "1", "2", " clips", "."]
    spans = unit_spans(tokens, "word")
    assert words(tokens) == ["Natalia", " sold", " 12", " clips."]
    assert spans[0] == (0, 2) and spans[-1][1] == len(tokens)
    assert all(a < b for a, b in spans) and all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


def test_token_units_are_single_tokens_and_unknown_units_are_refused():
    assert unit_spans(["a", "b"], "token") == [(0, 1), (1, 2)]
    with pytest.raises(ValueError, match="unknown unit"):
        unit_spans(["a"], "paragraph")


def test_real_tokenizer_spans_cover_the_chain(tiny_tokenizer):
    from chainprune.chains import tokenize_chain
    from chainprune.types import Chain

    chain = Chain("x", "How many?", "Natalia sold 48/2 = 24 clips in May. She sold 48+24 = 72 clips.", "The answer is 72.")
    ids = tokenize_chain(tiny_tokenizer, chain)
    for unit in ("word", "sentence", "step"):
        spans = unit_spans(ids.reasoning_texts, unit)
        assert spans[0][0] == 0 and spans[-1][1] == len(ids.reasoning_ids)
        assert "".join("".join(ids.reasoning_texts[a:b]) for a, b in spans) == chain.reasoning
    assert len(unit_spans(ids.reasoning_texts, "sentence")) == 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("First 48/2 = 24.\nThen 48+24 = 72.\nSo 72.", ["First 48/2 = 24.", "\nThen 48+24 = 72.", "\nSo 72."]),  # lines
        ("Step 1: a.\nstill step 1.\n\nStep 2: b.\n\n\nStep 3.",  # blank lines: paragraphs, whatever their lines
         ["Step 1: a.\nstill step 1.", "\n\nStep 2: b.", "\n\n\nStep 3."]),
        ("p1\n \t\np2", ["p1", "\n \t\np2"]),  # a line of whitespace only is blank
        ("one line, two sentences. Here.", ["one line, two sentences. Here."]),
        ("\n\nlead\nend\n", ["\n\nlead", "\nend\n"]),  # whitespace joins the next step; trailing, the last
    ],
)
def test_step_rule_on_characters(text, expected):
    assert steps(chars(text)) == expected


def test_steps_of_tokens_that_straddle_a_line_break_join_the_first():
    assert steps(["So 2", ".\nThen", " 3."]) == ["So 2.\nThen", " 3."]
