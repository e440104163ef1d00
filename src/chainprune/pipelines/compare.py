"""`chainprune compare`: fidelity of approximate traces against exact ones, per keep fraction.

Either file may hold unit traces (`prune --unit word|sentence`): each trace is cut at keep r where its own
prune stood (`Trace.deletions_at`: a unit trace after whole units, so it may keep fewer tokens than a token
trace), the overlap is of the kept token sets, Kendall's tau compares token ranks and the objective gap takes
each trace's objective at its own state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean

from chainprune.analysis.fidelity import kendall_tau, kept_overlap, objective_gap
from chainprune.data.jsonl import read_traces
from chainprune.trace_steps import check_trace_steps, steps_at
from chainprune.types import Trace


@dataclass
class KeepFidelity:
    keep: float
    examples: int
    overlap_mean: float
    overlap_min: float
    kendall_tau_mean: float
    objective_gap_mean: float
    objective_gap_min: float


@dataclass
class Comparison:
    exact: str
    approx: str
    exact_mode: dict | None
    approx_mode: dict | None
    per_keep: list[KeepFidelity]
    missing: list[str] = field(default_factory=list)  # ids in the exact file with no approximate trace

    def to_json(self) -> dict:
        return asdict(self)


COMPARED_FIELDS = ("id", "reasoning_ids", "deletion_order", "objective_values", "pruned")


def compare_traces(exact_path: Path, approx_path: Path) -> Comparison:
    """Match traces by id and measure, at each keep fraction both pruned to, how far `approx` is from `exact`."""
    exact = {str(t["id"]): t for t in read_traces(exact_path, COMPARED_FIELDS)}
    approx = {str(t["id"]): t for t in read_traces(approx_path, COMPARED_FIELDS)}
    common = [i for i in exact if i in approx]
    if not common:
        raise ValueError(f"{exact_path} and {approx_path} share no ids")
    for i in common:
        if exact[i]["reasoning_ids"] != approx[i]["reasoning_ids"]:
            raise ValueError(f"id {i!r}: the two traces tokenized the chain differently (different pruners?)")
    read = {}
    for side, (path, traces) in enumerate(((exact_path, exact), (approx_path, approx))):
        for i in common:
            try:
                trace = Trace.from_json(traces[i], partial=True)
                check_trace_steps(trace)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: trace {i!r} ({traces[i].get('unit', 'token')} trace): {e}") from None
            read[side, i] = trace
    keeps = sorted(set.intersection(*(set(exact[i]["pruned"]) & set(approx[i]["pruned"]) for i in common)), key=float, reverse=True)
    per_keep = []
    for key in keeps:
        r = float(key)
        overlaps, taus, gaps = [], [], []
        for i in common:
            e, a = read[0, i], read[1, i]
            n = len(e.reasoning_ids)
            deleted, steps = (e.deletions_at(r), a.deletions_at(r)), (steps_at(e, r), steps_at(a, r))
            overlaps.append(kept_overlap(e.deletion_order, a.deletion_order, n, r, deleted))
            taus.append(kendall_tau(e.deletion_order, a.deletion_order, n, r, deleted))
            gaps.append(objective_gap(e.objective_values, a.objective_values, n, r, steps))
        per_keep.append(KeepFidelity(r, len(common), mean(overlaps), min(overlaps), mean(taus), mean(gaps), min(gaps)))
    first = exact[common[0]], approx[common[0]]
    return Comparison(
        exact=str(exact_path),
        approx=str(approx_path),
        exact_mode=first[0].get("mode"),
        approx_mode=first[1].get("mode"),
        per_keep=per_keep,
        missing=[i for i in exact if i not in approx],
    )
