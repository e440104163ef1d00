"""Fidelity metrics on constructed orders with known answers, and `chainprune compare` end to end."""

import json

import pytest
from typer.testing import CliRunner

from chainprune.analysis.fidelity import deletion_ranks, kendall_tau, kept_overlap, objective_gap
from chainprune.cli import app


def test_identical_orders_are_perfect():
    order = [3, 0, 2, 1]
    assert kept_overlap(order, order, 4, 0.5) == 1.0
    assert kendall_tau(order, order, 4, 0.5) == 1.0
    assert objective_gap([0, -1, -2, -3, -4], [0, -1, -2, -3, -4], 4, 0.5) == 0.0


def test_known_overlap_tau_and_gap():
    # n=4, keep 0.5 -> 2 deletions. exact deletes {0, 1}, approx deletes {1, 2}: kept {2,3} vs {0,3}
    assert kept_overlap([0, 1, 2, 3], [1, 2, 0, 3], 4, 0.5) == 0.5
    assert deletion_ranks([0, 1, 2, 3], 4, 2) == [1, 2, 3, 3]
    assert deletion_ranks([1, 2, 0, 3], 4, 2) == [3, 1, 2, 3]
    # reversed full order at keep 0.25 (3 deletions): ranks [1,2,3,4] vs [4,3,2,1] -> tau = -1
    assert kendall_tau([0, 1, 2, 3], [3, 2, 1, 0], 4, 0.25) == pytest.approx(-1.0)
    assert objective_gap([0.0, -1.0, -2.5], [0.0, -1.5, -4.0], 4, 0.5) == pytest.approx(-1.5)


def trace(i, order, values, keeps=("0.5",)):
    return {"id": i, "reasoning_ids": [1, 2, 3, 4], "deletion_order": order, "objective_values": values,
            "pruned": {k: {"text": "", "num_tokens": 2} for k in keeps}}


def test_compare_command(tmp_path):
    exact = tmp_path / "exact.jsonl"
    approx = tmp_path / "approx.jsonl"
    exact.write_text("\n".join(json.dumps(t) for t in [trace("a", [0, 1], [0, -1, -2]), trace("b", [2, 3], [0, -1, -2])]) + "\n")
    approx.write_text(json.dumps(trace("a", [1, 2], [0, -1, -3]) | {"mode": {"per_step": 2}}) + "\n")
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(app, ["compare", str(exact), str(approx), "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["approx_mode"] == {"per_step": 2} and data["missing"] == ["b"]
    (row,) = data["per_keep"]
    assert row["keep"] == 0.5 and row["overlap_mean"] == 0.5 and row["objective_gap_mean"] == -1.0
