"""A trace read by steps, for token and unit traces alike: where each step ends, how many steps a keep fraction
means, and whether a unit trace is consistent.

A token trace deletes one token per step. A unit trace (`Trace.unit` "word" or "sentence") deletes one unit per
step, a contiguous span of tokens (`Trace.units`); its `deletion_order` lists each unit's tokens together, its
tokens share their unit's `deleted_step`, and `objective_values[s]` follows s unit deletions. Keep fractions stay
in tokens (`Trace.deletions_at`): the commands that read traces turn them into steps here, so a kept set is
always a state the greedy run reached. This module knows traces, not files, models or how text is cut into
units (`chainprune.units`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chainprune.types import Trace


def step_ends(trace: Trace) -> list[int]:
    """Tokens deleted after 0, 1, ..., S steps: [0, 1, 2, ...] for a token trace, unit lengths summed for a unit one."""
    ends = [0]
    for size in trace.step_sizes():
        ends.append(ends[-1] + size)
    return ends


def steps_at(trace: Trace, keep_fraction: float) -> int:
    """Steps made at `keep_fraction` (so `objective_values[steps_at(...)]` is the objective there)."""
    deleted = trace.deletions_at(keep_fraction)
    if trace.unit == "token":
        return deleted
    return step_ends(trace).index(deleted)


def check_unit_steps(unit: Any, units: Any, steps: Sequence[int | None], order: Sequence[int] | None) -> list[int]:
    """The tokens of each step (a unit trace's step sizes), or ValueError saying what is wrong.

    `steps` are the tokens' `deleted_step` values in position order, `order` the `deletion_order` (None: not
    given). A unit trace must have `units` spans covering every token in order, the tokens of a unit sharing one
    step, steps 1, 2, ... each deleting one unit, and `deletion_order` listing the units' tokens step by step."""
    if not isinstance(unit, str) or unit in ("", "token"):
        raise ValueError(f"field 'unit' must name the unit of deletion (word, sentence), got {unit!r}")
    n = len(steps)
    if not isinstance(units, list) or not all(
        isinstance(u, list) and len(u) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in u) for u in units
    ):
        raise ValueError(f"a {unit} trace needs 'units', a list of [start, end) token spans")
    at = 0
    for start, end in units:
        if start != at or end <= start:
            raise ValueError(f"units must be non-empty spans covering the tokens in order; [{start}, {end}) does not follow {at}")
        at = end
    if at != n:
        raise ValueError(f"units cover {at} tokens but the trace has {n}")
    by_step: dict[int, tuple[int, int]] = {}
    for start, end in units:
        shared = set(steps[start:end])
        if len(shared) != 1:
            raise ValueError(f"the tokens of {unit} [{start}, {end}) have different deleted_step values")
        (step,) = shared
        if step is not None:
            if step in by_step:
                raise ValueError(f"step {step} deletes two {unit}s, [{by_step[step][0]}, {by_step[step][1]}) and [{start}, {end})")
            by_step[step] = (start, end)
    if sorted(by_step) != list(range(1, len(by_step) + 1)):
        raise ValueError(f"the {unit}s' deleted_step values are not 1, 2, ... each used once")
    expected = [i for step in sorted(by_step) for i in range(*by_step[step])]
    if order is not None and list(order) != expected:
        raise ValueError(f"deletion_order does not list each {unit}'s tokens together, {unit}s in the order of "
                         "their deleted_step")
    return [by_step[step][1] - by_step[step][0] for step in sorted(by_step)]


def check_trace_steps(trace: Trace) -> None:
    """ValueError when a unit trace's units, deleted steps, deletion order and objective values disagree (a token
    trace passes unchecked: the commands' own checks cover it)."""
    if trace.unit == "token":
        return
    if trace.tokens is None:
        raise ValueError(f"a {trace.unit} trace needs its 'tokens' (their deleted_step gives the steps)")
    if [t.position for t in trace.tokens] != list(range(len(trace.tokens))):
        raise ValueError("tokens must be listed by position 0, 1, ...")
    if trace.reasoning_ids is not None and len(trace.reasoning_ids) != len(trace.tokens):
        raise ValueError(f"{len(trace.tokens)} tokens for {len(trace.reasoning_ids)} reasoning ids")
    sizes = check_unit_steps(trace.unit, trace.units, [t.deleted_step for t in trace.tokens], trace.deletion_order)
    if trace.objective_values is not None and len(trace.objective_values) != len(sizes) + 1:
        raise ValueError(f"{len(trace.objective_values)} objective values for {len(sizes)} {trace.unit} deletions "
                         f"(expected {len(sizes) + 1})")
