"""Functional token categories (the paper's App. D.1) and the offline, rule-based annotator.

Every reasoning token gets exactly one of six categories. All pieces of one word share its category, and a
token that could fit several takes the first in `CATEGORIES` (the paper's priority order). The rule annotator
works on words, not tokens: it splits the reasoning text (the concatenation of the token texts) into words,
labels each word from lexicons and a little context, then gives each token the highest-priority category among
the words it overlaps; tokens sharing a word are merged so that they agree. It is a deterministic, offline
approximation of the paper's gpt-5-mini annotation (see `chainprune.analysis.llm` for that); it knows nothing
about models or files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

CATEGORIES = ("SymbMath", "MetaDisc", "CoRef", "EntName", "VerbalMath", "Grammar")  # priority order
PRIORITY = {c: k for k, c in enumerate(CATEGORIES)}

DESCRIPTIONS = {
    "SymbMath": "explicit numeric or symbolic computation: digits, currency symbols, arithmetic operators, "
    "equations, fractions, numeric constants",
    "MetaDisc": "tokens that organize, narrate or scaffold the reasoning ('to find', 'we need to', 'step', "
    "'first', 'now', 'so', \"let's\", 'calculate', 'the final answer is', step numbers, list markers); "
    "arithmetic verbs only when narrating a step",
    "CoRef": "pronouns and referential expressions for earlier entities or quantities ('she', 'her', 'it', "
    "'they', 'we', 'this')",
    "EntName": "proper names and concrete entities of the problem: people, objects, units, counted nouns "
    "('Natalia', 'wallet', 'pages', 'year')",
    "VerbalMath": "arithmetic relations or quantities in natural language ('half', 'twice', 'total', "
    "'remaining', 'more', 'per', 'rate'); arithmetic verbs when they describe the operation itself",
    "Grammar": "grammatical fillers: articles, prepositions, conjunctions, auxiliary verbs, punctuation, "
    "formatting tokens, whitespace",
}


class Annotator(Protocol):
    def __call__(self, token_texts: Sequence[str]) -> list[str]:
        """One category per token of one reasoning chain (the texts concatenate to the reasoning)."""


def _words(text: str) -> set[str]:
    return set(text.split())


METADISC = _words(
    "first firstly second secondly third thirdly next then now so therefore thus hence finally lastly step "
    "steps let let's lets calculate calculating calculated compute computing find finding determine solve "
    "answer final since because means mean recall note check start begin conclude conclusion given "
    "know knowing need needs figure overall"
)
COREF = _words(
    "he she it they them him her hers his its their theirs we us our ours you your yours i me my mine this "
    "these those himself herself itself themselves ourselves yourself one's"
)
VERBALMATH = _words(
    "half halves halved twice double doubled doubles triple tripled thrice quarter quarters third thirds "
    "fourth fifth fraction percent percentage total totals totaling sum sums difference product quotient "
    "remaining remain remains remainder left leftover more less fewer fewest most least per rate rates each "
    "every times plus minus multiply multiplied multiplying divide divided dividing add added adding subtract "
    "subtracted subtracting increase increased decrease decreased average ratio altogether combined together "
    "equal equals equally amount amounts many much all both another extra additional whole rest cost costs "
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred hundreds "
    "thousand thousands million dozen dozens pair pairs number numbers than difference"
)
ARITHMETIC_VERBS = _words("add multiply divide subtract")
GRAMMAR = _words(
    "a an the of to in on at by for with from into onto over under about as than and or but nor if because "
    "while when where which who whom whose what that there here is are was were be been being am do does did "
    "has have had having will would shall should can could may might must not no yes up out off down also "
    "just only very too again still already yet any some such own same other after before during until "
    "between through per via how why whether each's it's that's there's"
)
# Words no lexicon lists that are verbs rather than entities: kept out of EntName, labelled Grammar.
COMMON_VERBS = _words(
    "make makes made making buy buys bought buying sell sells sold selling pay pays paid paying get gets got "
    "getting give gives gave given giving take takes took taken taking spend spends spent spending earn earns "
    "earned earning save saves saved saving use uses used using go goes went going come comes came put puts "
    "keep keeps kept eat eats ate eaten run runs ran walk walks walked read reads work works worked working "
    "has had find finds found see sees saw say says said tell told want wants wanted like likes liked know "
    "knows knew think thinks thought try tries tried plant plants planted receive receives received collect "
    "collects collected order orders ordered owe owes owed charge charges charged left leaves"
)
UNITS = _words(
    "dollar dollars cent cents hour hours minute minutes second seconds day days week weeks month months year "
    "years mile miles meter meters km kilometers inch inches foot feet pound pounds ounce ounces gallon "
    "gallons liter liters kg kilogram kilograms gram grams percent"
)
MATH_SYMBOLS = set("+-*/=×÷%$€£^<>()[]")
WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*|[^\sA-Za-z0-9]+")
LIST_MARKER = re.compile(r"(?m)^[ \t]*(?:\d+[.)]|[-*•]|#+|\*\*)(?=\s)")


def _word_category(words: list[tuple[int, int, str]], k: int, text: str) -> str:
    start, end, word = words[k]
    lower = word.lower().replace("’", "'")
    before = text[:start].rstrip(" \t")
    after = text[end:]
    if any(ch.isdigit() for ch in word):
        return "SymbMath"
    if not word[0].isalnum():
        if set(word) & MATH_SYMBOLS:
            hyphen_in_word = word == "-" and before[-1:].isalpha() and after[:1].isalpha()
            return "Grammar" if hyphen_in_word else "SymbMath"
        between_digits = word in (".", ",") and before[-1:].isdigit() and after[:1].isdigit()
        return "SymbMath" if between_digits else "Grammar"
    # a lone letter next to numbers or operators is a variable or a times sign: "0.2 x 50", "X + 3 = 10"
    if len(word) == 1 and lower not in ("a", "i"):
        neighbours = before[-1:] + after.lstrip(" \t")[:1]
        if any(ch.isdigit() or ch in MATH_SYMBOLS or ch == "." for ch in neighbours):
            return "SymbMath"
    previous = words[k - 1][2].lower() if k > 0 else ""
    following = words[k + 1][2].lower() if k + 1 < len(words) else ""
    if lower in ARITHMETIC_VERBS:  # narrating a step ("we add", "let's add", "to add") vs the operation
        return "MetaDisc" if previous in ("we", "let's", "lets", "to", "then", "now", "first", "next", "") else "VerbalMath"
    if lower in ("we", "i") and following in ("need", "have", "can", "know", "will", "must", "get", "find"):
        return "MetaDisc"  # "we need to", "we can find": narration of the reasoning
    for lexicon, category in ((METADISC, "MetaDisc"), (COREF, "CoRef"), (UNITS, "EntName"),
                              (VERBALMATH, "VerbalMath"), (GRAMMAR, "Grammar"), (COMMON_VERBS, "Grammar")):
        if lower in lexicon:
            return category
    if lower.endswith("'s") and lower[:-2] in COREF:
        return "CoRef"
    if lower.endswith("ed") and len(lower) > 4 and not word[0].isupper():
        return "Grammar"  # a past-tense verb no lexicon lists: scaffolding rather than an entity
    return "EntName"  # names and the remaining content words: objects, counted nouns


def word_spans(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, word, category) for every word of `text`; whitespace belongs to no word."""
    words = [(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]
    labelled = [(s, e, w, _word_category(words, k, text)) for k, (s, e, w) in enumerate(words)]
    markers = [(m.start(), m.end()) for m in LIST_MARKER.finditer(text)]
    in_marker = lambda s, e: any(ms <= s and e <= me for ms, me in markers)  # noqa: E731
    return [(s, e, w, "MetaDisc" if in_marker(s, e) else c) for s, e, w, c in labelled]


def spread_to_tokens(token_texts: Sequence[str], spans: Sequence[tuple[int, int, str, str]]) -> list[str]:
    """Token categories from word categories: a token takes the highest-priority category of the words it
    overlaps, then all tokens overlapping one word take the highest-priority category among them, so the
    pieces of a word agree. A token overlapping no word (whitespace) is Grammar."""
    bounds, offset = [], 0
    for piece in token_texts:
        bounds.append((offset, offset + len(piece)))
        offset += len(piece)
    parent = list(range(len(token_texts)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    best: list[str | None] = [None] * len(token_texts)
    t = 0
    for start, end, _, category in spans:
        while t < len(bounds) and bounds[t][1] <= start:
            t += 1
        first = None
        k = t
        while k < len(bounds) and bounds[k][0] < end:
            if bounds[k][1] > bounds[k][0]:
                best[k] = category if best[k] is None else min(best[k], category, key=PRIORITY.get)
                if first is None:
                    first = k
                else:
                    parent[root(k)] = root(first)
            k += 1
    group_best: dict[int, str] = {}
    for k in range(len(token_texts)):
        own = best[k] or "Grammar"
        r = root(k)
        group_best[r] = min(group_best.get(r, own), own, key=PRIORITY.get)
    return [group_best[root(k)] for k in range(len(token_texts))]


def rule_annotator(token_texts: Sequence[str]) -> list[str]:
    """Deterministic word-level categories for one chain's tokens (see the module docstring)."""
    return spread_to_tokens(token_texts, word_spans("".join(token_texts)))


def check_categories(categories: Sequence[str], count: int) -> list[str]:
    """`categories` validated: one known category per token; ValueError says what is wrong."""
    if len(categories) != count:
        raise ValueError(f"got {len(categories)} categories for {count} tokens")
    unknown = sorted({c for c in categories if c not in PRIORITY})
    if unknown:
        raise ValueError(f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(CATEGORIES)}")
    return list(categories)
