"""The chain's forward and what scoring a deletion computed of the chain after it: the states the KV-sharing
engines build on.

`forward_current` runs the chain as it stands once (incrementally from an earlier chain's forward when they share
a prefix) into a `CurrentChain`: keys, values, hidden states and target log-probs, from which every deletion
candidate's unchanged prefix is read. A `Continuation` is what an engine computed of one candidate's suffix;
`BestContinuation` holds the best one scored, from which the next chain's forward is built when greedy deletes
that candidate (`CurrentChain.after_deletion`). A `Partial` is what was computed of one candidate's suffix,
which a later call resumes from. `ChainCache` holds all three for one chain between scoring calls: what a
caller keeps and an engine reads (`scoring.engine.ScoreRequest.cache`). This module knows token ids and the
objectives, not engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from chainprune.scoring.logprobs import ForwardStats, output_cache, run_decoder, target_logprobs
from chainprune.scoring.objectives import objective_start
from chainprune.types import ChainIds

@dataclass
class CurrentChain:
    """One forward of the chain as it stands: what the KV-sharing engines build every candidate from."""

    seq: torch.Tensor  # (L,) token ids
    n_prompt: int
    # last hidden states (L, d), and per layer (keys, values), each (1, kv_heads, L, head_dim); the last
    # token's are left out when built by `after_deletion` (L - 1 rows: nothing reads them)
    hidden: torch.Tensor
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    # (L - P,) log p(seq[P + k] | seq[:P + k]); 0 before the objective's start when built by `after_deletion`
    # (nothing reads those)
    base_logp: torch.Tensor
    base_cumsum: torch.Tensor  # (L - P + 1,) [k] = sum of base_logp[:k]
    base: float  # the objective of the chain as it stands
    candidate_start: int  # first counted target index in a candidate sequence (one token shorter)
    # (L - P,) each candidate's first target log-prob (`first_target`), NaN until computed
    first_targets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.first_targets is None:
            self.first_targets = torch.full((self.seq.shape[0] - self.n_prompt,), float("nan"), dtype=torch.float64, device=self.seq.device)

    def start_after(self, width: torch.Tensor | int) -> torch.Tensor | int:
        """First counted target index in a candidate sequence that deletes `width` reasoning tokens: the
        objective counts from the prompt's end (joint) or from the answer's start, which moves left by the
        tokens deleted beyond one (answer). `candidate_start` is this for a width of 1."""
        if isinstance(width, int):
            return max(self.n_prompt, self.candidate_start - (width - 1))
        return torch.clamp(self.candidate_start - (width - 1), min=self.n_prompt)

    def unchanged_prefix(self, cut: torch.Tensor | int) -> torch.Tensor:
        """Counted log-probs of targets before index P + cut: identical in every candidate deleting at or after cut."""
        first = max(0, self.candidate_start - self.n_prompt)
        cut = torch.as_tensor(cut, device=self.base_cumsum.device)
        return self.base_cumsum[cut] - self.base_cumsum[torch.clamp(cut, max=first)]

    @torch.no_grad()
    def after_deletion(self, model: Any, ids: ChainIds, objective: str, continuation: Continuation) -> CurrentChain | None:
        """The forward of `ids`, this chain less reasoning tokens `continuation.cut` to `cut + width`, built from
        the states scoring that deletion computed, with no forward run. Scoring leaves out the last token (it
        predicts nothing), so its keys and hidden state are missing too: no candidate reads them (a candidate
        attends to the keys before its deletion, and its first target is predicted by the row before that).
        Same numbers to rounding as `forward_current`; None when `ids` is not that chain."""
        at = self.n_prompt + continuation.cut
        seq = torch.cat([self.seq[:at], self.seq[at + continuation.width :]])
        if ids.input_ids != seq.tolist() or continuation.hidden.shape[0] != seq.shape[0] - at - 1:
            return None
        m = len(ids.reasoning_ids)
        # the target at P + cut (the token after the deleted ones) is predicted by the last unchanged position
        cut = torch.tensor([continuation.cut], device=seq.device)
        first = self.first_target(model, cut, torch.tensor([continuation.width], device=seq.device))
        base_logp = torch.cat([self.base_logp[: continuation.cut], first, continuation.logp])
        chain = CurrentChain(
            seq=seq,
            n_prompt=self.n_prompt,
            hidden=torch.cat([self.hidden[:at], continuation.hidden]),
            layers=[(torch.cat([k[:, :, :at], ck], dim=2), torch.cat([v[:, :, :at], cv], dim=2)) for (k, v), (ck, cv) in zip(self.layers, continuation.layers)],
            base_logp=base_logp,
            base_cumsum=torch.cat([base_logp.new_zeros(1), base_logp.cumsum(0)]),
            base=float(base_logp[objective_start(self.n_prompt, m, objective) - self.n_prompt :].sum()),
            candidate_start=objective_start(self.n_prompt, max(m - 1, 0), objective),
        )
        chain.carry_first_targets(self, continuation.cut - 1)
        return chain

    def carry_first_targets(self, earlier: CurrentChain, upto: int) -> None:
        """Take the first targets of candidates before `upto` from `earlier`, a chain whose tokens before
        reasoning index upto + 1 are this one's (candidate i's first target reads those up to i + 1), where
        the objective counts it in both or neither."""
        cut = torch.arange(max(0, upto), device=self.seq.device)
        same = (self.n_prompt + cut >= self.candidate_start) == (earlier.n_prompt + cut >= earlier.candidate_start)
        self.first_targets[cut[same]] = earlier.first_targets[cut[same]]

    def first_target(self, model: Any, cut: torch.Tensor, width: torch.Tensor | None = None) -> torch.Tensor:
        """The first target log-prob of the candidate deleting reasoning tokens cut[r] to cut[r] + width[r]
        (width 1 when not given): log p(seq[P + cut + width] | the hidden state at P + cut - 1), 0 where not
        counted. Single-token deletions' are computed once per chain (and kept across a later deletion for the
        candidates before it, which it leaves unchanged); wider ones' each time asked."""
        single = torch.ones_like(cut, dtype=torch.bool) if width is None else width == 1
        out = torch.empty(cut.shape[0], dtype=torch.float64, device=self.hidden.device)
        if not bool(single.all()):
            wide, w = cut[~single], width[~single]
            out[~single] = self.boundary_logp(model, wide, self.seq[self.n_prompt + wide + w], self.start_after(w))
        cut = cut[single]
        todo = cut[torch.isnan(self.first_targets[cut])]
        if todo.numel():
            self.first_targets[todo] = self.boundary_logp(model, todo, self.seq[self.n_prompt + todo + 1])
        out[single] = self.first_targets[cut]
        return out

    def boundary_logp(
        self, model: Any, cut: torch.Tensor, targets: torch.Tensor, start: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """log p(targets[r] | the current chain's hidden state at P + cut[r] - 1), 0 where the candidate
        sequence's index P + cut[r] comes before `start` (its first counted target; `candidate_start` if not
        given).

        A candidate whose recomputed part starts at P + cut has its first target predicted by the last
        unchanged position, whose hidden state the current chain's forward already holds.
        """
        out = torch.zeros(cut.shape[0], dtype=torch.float64, device=self.hidden.device)
        counted = self.n_prompt + cut >= (self.candidate_start if start is None else start)
        if counted.any():
            rows = self.hidden[self.n_prompt + cut[counted] - 1]
            out[counted] = target_logprobs(model, rows, targets[counted])
        return out


@dataclass
class Continuation:
    """What exactly scoring the deletion of reasoning tokens `cut` to `cut + width` computed of the chain after
    it: the keys, values, hidden states and target log-probs (0 where the objective does not count them) of its
    recomputed suffix, every position from P + cut to the one before the last. If that deletion is made, these
    are the next chain's forward (`CurrentChain.after_deletion`)."""

    cut: int
    score: float
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (1, kv_heads, n, head_dim)
    hidden: torch.Tensor  # (n, d)
    logp: torch.Tensor  # (n,) float64: packed token k's log-prob of its target seq[P + cut + width + 1 + k]
    width: int = 1


class BestContinuation:
    """Keeps the continuation of the best candidate an engine offers (exact ties to the smallest position):
    greedy deletes that one, so the next pass's forward of the chain comes almost free."""

    def __init__(self) -> None:
        self.kept: Continuation | None = None

    def wants(self, cut: int, score: float) -> bool:
        return self.kept is None or score > self.kept.score or (score == self.kept.score and cut < self.kept.cut)

    def offer(self, continuation: Continuation) -> None:
        if self.wants(continuation.cut, continuation.score):
            self.kept = continuation


@dataclass
class Partial:
    """What has been computed of one candidate's suffix on the current chain: its first `done` recomputed
    tokens' keys and values per layer, hidden states and target log-probs (0 where the objective does not count
    them). A later call on the same chain resumes the candidate from here instead of recomputing them."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (1, kv_heads, done, head_dim)
    hidden: torch.Tensor  # (done, d)
    logp: torch.Tensor  # (done,) float64

    @property
    def done(self) -> int:
        return self.hidden.shape[0]

    def first(self, count: int) -> Partial:
        """The first `count` tokens of this suffix."""
        return Partial([(k[:, :, :count], v[:, :, :count]) for k, v in self.layers], self.hidden[:count], self.logp[:count])

    def then(self, more: Partial) -> Partial:
        """This suffix followed by the next tokens' `more`."""
        return Partial(
            layers=[(torch.cat([k, mk], dim=2), torch.cat([v, mv], dim=2)) for (k, v), (mk, mv) in zip(self.layers, more.layers)],
            hidden=torch.cat([self.hidden, more.hidden]),
            logp=torch.cat([self.logp, more.logp]),
        )


@dataclass
class ChainCache:
    """What scoring keeps of one chain between calls, for the chain as it last stood: its forward (`current`,
    of the original reasoning tokens `tokens`, its candidates at `spans` in it), the best candidate's
    continuation scored on it (`best`), and what was computed of each candidate's suffix on it (`partials`,
    candidate -> `Partial`; None while not kept). The caller (`pruning.ChainScorer`) owns it and moves it to
    the next chain (`moved`); engines read and add to it."""

    tokens: tuple[int, ...] = ()
    current: CurrentChain | None = None
    spans: list[tuple[int, int]] = field(default_factory=list)
    best: BestContinuation = field(default_factory=BestContinuation)
    partials: dict[int, Partial] | None = None

    def holds(self, tokens: Sequence[int]) -> bool:
        """Whether `current` is the forward of the chain of these reasoning tokens."""
        return self.current is not None and self.tokens == tuple(tokens)

    def carried(self, tokens: Sequence[int]) -> dict[int, Partial] | None:
        """What was computed of the candidates' suffixes on this chain that the chain of reasoning `tokens`
        leaves as it was: the suffix token j of candidate k, deleting [s, e), reads reasoning tokens up to
        e + j + 1, unchanged when they come before the first token deleted since (and candidate k keeps its index
        and span). So each suffix is kept up to there."""
        if self.partials is None or self.current is None:
            return None
        tokens = tuple(tokens)
        first = next((k for k, (a, b) in enumerate(zip(self.tokens, tokens)) if a != b), min(len(self.tokens), len(tokens)))
        return {
            k: p.first(min(p.done, first - self.spans[k][1] - 1))
            for k, p in self.partials.items()
            if first - self.spans[k][1] - 1 > 0
        }


@torch.no_grad()
def forward_current(
    model: Any, ids: ChainIds, objective: str, stats: ForwardStats, previous: CurrentChain | None = None
) -> CurrentChain:
    """One forward of the chain as it stands.

    With `previous`, the forward of an earlier chain (the one before the last deletions), the tokens the two
    share at the front keep their keys, values, hidden states and log-probs, and only the rest is run, on
    top of the shared keys and values: after deleting reasoning token i, the prompt and the reasoning before
    i are not recomputed. Same numbers to rounding as a fresh forward.
    """
    n_prompt, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    seq = torch.tensor(ids.input_ids, device=next(model.parameters()).device)
    length = seq.shape[0]
    shared = 0 if previous is None else _shared_prefix(previous.seq, seq, n_prompt, previous.n_prompt)
    if previous is not None:
        shared = min(shared, previous.hidden.shape[0])  # its last token's states may be left out
    if shared:
        cache = DynamicCache(ddp_cache_data=[(k[:, :, :shared], v[:, :, :shared]) for k, v in previous.layers])
        positions = torch.arange(shared, length, device=seq.device)[None]
        out = run_decoder(model, cache, input_ids=seq[None, shared:], position_ids=positions, use_cache=True)
        hidden = torch.cat([previous.hidden[:shared], out.last_hidden_state[0]])
    else:
        out = run_decoder(model, input_ids=seq[None], use_cache=True)
        hidden = out.last_hidden_state[0]
    stats.add(1, length - shared)
    # Target P + k is predicted by row P + k - 1: rows before `shared` - 1 predict unchanged targets.
    reused = max(0, shared - n_prompt)
    fresh = target_logprobs(model, hidden[n_prompt - 1 + reused : length - 1], seq[n_prompt + reused :])
    base_logp = torch.cat([previous.base_logp[:reused], fresh]) if reused else fresh
    base = float(base_logp[objective_start(n_prompt, m, objective) - n_prompt :].sum())
    chain = CurrentChain(
        seq=seq,
        n_prompt=n_prompt,
        hidden=hidden,
        layers=[(layer.keys, layer.values) for layer in output_cache(out).layers],
        base_logp=base_logp,
        base_cumsum=torch.cat([base_logp.new_zeros(1), base_logp.cumsum(0)]),
        base=base,
        candidate_start=objective_start(n_prompt, max(m - 1, 0), objective),
    )
    if reused > 1:
        chain.carry_first_targets(previous, reused - 1)
    return chain


def _shared_prefix(before: torch.Tensor, after: torch.Tensor, n_prompt: int, n_prompt_before: int) -> int:
    """How many leading tokens two chains share (0 unless their prompts are the same), leaving at least one
    token to run so the forward has something to compute."""
    if n_prompt != n_prompt_before:
        return 0
    n = min(before.shape[0], after.shape[0])
    differs = (before[:n] != after[:n]).nonzero()
    shared = min(int(differs[0, 0]) if differs.numel() else n, after.shape[0] - 1)
    return shared if shared >= n_prompt else 0
