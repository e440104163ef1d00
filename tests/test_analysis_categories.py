"""Rule annotator, `chainprune annotate`, and retention curves on constructed inputs with known answers."""

import json

import pytest
from typer.testing import CliRunner

from chainprune.analysis.categories import check_categories, rule_annotator, spread_to_tokens
from chainprune.analysis.retention import overall_kept_fraction, retention_curve
from chainprune.cli import app
from chainprune.pipelines.analyze import run_annotate, run_retention

# (token texts of one reasoning, expected category per token)
TABLE = [
    (["Natalia", " sold", " 48", "/", "2", " =", " 24", " clips", "."],
     ["EntName", "Grammar", "SymbMath", "SymbMath", "SymbMath", "SymbMath", "SymbMath", "EntName", "Grammar"]),
    (["So", " she", " has", " half", " as", " many", " left", "."],
     ["MetaDisc", "CoRef", "Grammar", "VerbalMath", "Grammar", "VerbalMath", "VerbalMath", "Grammar"]),
    (["First", ",", " we", " need", " to", " find", " the", " total", " cost", " per", " week"],
     ["MetaDisc", "Grammar", "MetaDisc", "MetaDisc", "Grammar", "MetaDisc", "Grammar", "VerbalMath", "VerbalMath", "VerbalMath", "EntName"]),
    (["He", " earns", " $", "0", ".", "2", " x", " 50", " =", " $", "10", " in", " total"],
     ["CoRef", "Grammar", "SymbMath", "SymbMath", "SymbMath", "SymbMath", "SymbMath", "SymbMath", "SymbMath", "SymbMath", "SymbMath", "Grammar", "VerbalMath"]),
    (["1", ".", " Let", "'s", " divide", " 30", " by", " 3", "\n", "It", " is", " divided", " by", " 3"],
     ["MetaDisc", "MetaDisc", "MetaDisc", "MetaDisc", "MetaDisc", "SymbMath", "Grammar", "SymbMath", "Grammar",
      "CoRef", "Grammar", "VerbalMath", "Grammar", "SymbMath"]),
    # sub-word pieces share their word's category: "Hann" + "ah" + "'s", "tw" + "ice"
    (["Hann", "ah", "'s", " tw", "ice", " the", " amount"],
     ["EntName", "EntName", "EntName", "VerbalMath", "VerbalMath", "Grammar", "VerbalMath"]),
    # a token spanning two words takes the higher-priority one, and its word's other pieces follow it
    ([" cost", "s", " 5", "0."],
     ["VerbalMath", "VerbalMath", "SymbMath", "SymbMath"]),
    (["  ", "\n\n", "The", " answer", " is", " 3", "."],
     ["Grammar", "Grammar", "Grammar", "MetaDisc", "Grammar", "SymbMath", "Grammar"]),
]


@pytest.mark.parametrize("tokens,expected", TABLE, ids=[" ".join(t)[:30] for t, _ in TABLE])
def test_rule_annotator_table(tokens, expected):
    assert rule_annotator(tokens) == expected


def test_word_pieces_share_the_highest_priority():
    # word "abc" (EntName) overlaps a token that also covers "5" (SymbMath): all of "abc"'s pieces follow
    spans = [(0, 3, "abc", "EntName"), (3, 4, "5", "SymbMath"), (5, 8, "the", "Grammar")]
    assert spread_to_tokens(["a", "bc5", " the"], spans) == ["SymbMath", "SymbMath", "Grammar"]


def test_empty_and_check():
    assert rule_annotator([]) == []
    assert check_categories(["Grammar"], 1) == ["Grammar"]
    with pytest.raises(ValueError, match="2 categories for 1"):
        check_categories(["Grammar", "Grammar"], 1)
    with pytest.raises(ValueError, match="'Noise'"):
        check_categories(["Noise"], 1)


def test_retention_known_answer():
    # chain 0: 4 tokens, categories S S C G; deletes C first, then G, then S(1)
    # chain 1: 2 tokens, S C; deletes C first
    chains = [(["SymbMath", "SymbMath", "CoRef", "Grammar"], [2, 3, 1]), (["SymbMath", "CoRef"], [1])]
    points = {(p.keep, p.category): p for p in retention_curve(chains, [1.0, 0.5])}
    assert points[(1.0, "SymbMath")].retention == 1.0
    # keep 0.5: chain 0 keeps floor(2)=2 -> deletes 2,3; chain 1 keeps 1 -> deletes 1
    assert (points[(0.5, "SymbMath")].kept, points[(0.5, "SymbMath")].tokens) == (3, 3)
    assert points[(0.5, "CoRef")].retention == 0.0
    assert points[(0.5, "Grammar")].retention == 0.0
    assert points[(0.5, "EntName")].tokens == 0
    assert overall_kept_fraction([4, 2], 0.5) == 0.5
    with pytest.raises(ValueError, match="keep 0.2"):
        retention_curve(chains, [0.2])


def trace_record(id, texts, order):
    n = len(texts)
    step = {p: s for s, p in enumerate(order, 1)}
    return {"id": id, "pruner": "x", "objective": "joint", "prompt_ids": [1], "reasoning_ids": list(range(10, 10 + n)),
            "answer_ids": [2], "deletion_order": order, "objective_values": [0.0] * (len(order) + 1),
            "tokens": [{"position": i, "text": t, "deleted_step": step.get(i)} for i, t in enumerate(texts)],
            "pruned": {"0.5": {"text": "", "num_tokens": n - len(order)}}}


def test_annotate_pipeline_resume_and_bad_records(tmp_path):
    src = tmp_path / "traces.jsonl"
    good = trace_record("a", ["Natalia", " sold", " 48", " clips"], [1, 3])
    src.write_text(json.dumps(good) + "\n" + "{not json\n" + json.dumps({"id": "b"}) + "\n"
                   + json.dumps(trace_record("c", ["So", " she", " ate", " 2"], [0, 2])) + "\n")
    out = tmp_path / "annotated.jsonl"
    summary = run_annotate(src, out, rule_annotator)
    assert summary.done == 2 and [f.line for f in summary.failures] == [2, 3]
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [t["category"] for t in rows[0]["tokens"]] == ["EntName", "Grammar", "SymbMath", "EntName"]
    assert rows[0]["deletion_order"] == [1, 3]
    from chainprune.types import Trace
    assert Trace.from_json(rows[1]).tokens[0].category == "MetaDisc"  # annotated traces still load
    assert "category" not in Trace.from_json(good).to_json()["tokens"][0]  # unannotated format unchanged
    with pytest.raises(ValueError, match="already exists"):
        run_annotate(src, out, rule_annotator)
    again = run_annotate(src, out, rule_annotator, resume=True)
    assert again.done == 0 and again.skipped == 2 and len(out.read_text().splitlines()) == 2

    def failing(texts):
        return ["Grammar"]  # wrong length: reported per record, never written

    bad = run_annotate(src, tmp_path / "bad.jsonl", failing)
    assert bad.done == 0 and any("1 tokens" in f.message or "categories" in f.message for f in bad.failures)


def test_retention_pipeline_and_cli(tmp_path):
    src = tmp_path / "traces.jsonl"
    texts = ["Natalia", " sold", " 48", "/", "2", " =", " 24", " clips", " in", " April", "."]
    order = [1, 10, 8, 7, 9, 0]  # grammar and entities first: symbolic math is all kept at keep 0.5
    src.write_text(json.dumps(trace_record("a", texts, order)) + "\n")
    annotated = tmp_path / "annotated.jsonl"
    result = CliRunner().invoke(app, ["annotate", str(src), "--out", str(annotated)])
    assert result.exit_code == 0, result.output
    res = run_retention([("greedy", annotated)], tmp_path / "ret", rankers=["uniform"])
    assert {p.suffix for p in res.files} == {".csv", ".png", ".svg"} and all(p.stat().st_size > 0 for p in res.files)
    rows = {(r["label"], r["keep"], r["category"]): r for r in res.rows}
    assert rows[("greedy", 0.5, "SymbMath")]["retention"] == 1.0
    assert rows[("greedy", 0.5, "EntName")]["retention"] == 0.0
    assert rows[("greedy", 0.5, "Grammar")]["kept"] == 0 and ("greedy", 0.4, "Grammar") not in rows
    assert ("uniform", 0.1, "SymbMath") in rows  # a ranker orders every token
    cli = CliRunner().invoke(app, ["analyze", "retention", f"greedy={annotated}", "--out", str(tmp_path / "c" / "r")])
    assert cli.exit_code == 0, cli.output
    assert (tmp_path / "c" / "r.csv").read_text().startswith("label,keep,overall_kept,category")
    missing = CliRunner().invoke(app, ["analyze", "retention", str(src), "--out", str(tmp_path / "d")])
    assert missing.exit_code == 2 and "annotate" in missing.output
