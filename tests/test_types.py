"""Traces and matched records read through their types: the ids, the kept text, partial records, the JSON kept as it was."""

import json

import pytest

from chainprune.chains import tokenize_chain
from chainprune.pruning import prune_chain
from chainprune.types import Chain, MatchedCut, MatchedRecord, Trace, TraceToken

CHAIN = Chain("c", "How many clips?", "Natalia sold 48/2 = 24 clips in May, 72 in all.", "The answer is 72.")


def test_a_trace_gives_its_ids_and_kept_text(tiny_pruner):
    trace = Trace.from_json(json.loads(json.dumps(prune_chain(tiny_pruner, CHAIN, keep=[0.5]).to_json())))
    assert trace.ids == tokenize_chain(tiny_pruner.tokenizer, CHAIN)
    assert trace.kept_text(1.0) == CHAIN.reasoning  # the tokens' texts concatenate to the reasoning
    kept = trace.kept_positions(0.5)
    assert trace.kept_text(0.5) == "".join(trace.ids.reasoning_texts[i] for i in kept)
    assert trace.smallest_keep == 0.5


def test_a_partial_record_reads_what_it_has():
    record = {"id": 7, "deletion_order": [1, 0], "pruned": {"0.5": {"text": "b", "num_tokens": 1, "student_tokens": 1}},
              "tokens": [{"position": 0, "text": "a", "deleted_step": 2}, {"position": 1, "text": "b", "deleted_step": 1}]}
    trace = Trace.from_json(record, partial=True)
    assert (trace.id, trace.objective, trace.reasoning_ids, trace.smallest_keep) == (7, None, None, 0.5)
    assert trace.kept_text(0.5) == "a" and trace.ids.reasoning_texts == ["a", "b"]
    with pytest.raises(TypeError):
        Trace.from_json(record)  # a whole trace needs every field
    with pytest.raises(TypeError, match="'pruned'"):
        Trace.from_json(dict(record, pruned={"0.5": 3}), partial=True)


def test_matched_record_json_keeps_its_field_order():
    record = MatchedRecord(
        id="c", method="uniform", settings={"pruner": "p", "student_tokenizer": "s", "seed": 0},
        prompt_ids=[1], reasoning_ids=[2, 3], answer_ids=[4], deletion_order=[1, 0],
        tokens=[TraceToken(0, "a", 2), TraceToken(1, "b", 1)], student_tokens=2,
        pruned={"0.5": MatchedCut("a", 1, 1, 0.5, 1, 1, False)},
    ).to_json()
    assert list(record) == ["id", "method", "pruner", "student_tokenizer", "seed", "prompt_ids", "reasoning_ids",
                            "answer_ids", "deletion_order", "tokens", "student_tokens", "pruned"]
    assert record["tokens"][0] == {"position": 0, "text": "a", "deleted_step": 2}
    assert list(record["pruned"]["0.5"]) == ["text", "num_tokens", "student_tokens", "student_fraction",
                                             "target_student_tokens", "deletions", "order_exhausted"]
