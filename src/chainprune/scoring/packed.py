"""The `packed` engine: every candidate's suffix packed into one sequence, with no padding and no recompute.

After one forward of the current chain (length L, prompt P), its KV cache holds keys/values for every
position. Deleting reasoning token i leaves positions before P + i untouched, so candidate i needs only
its suffix seq[P+i+1 : L-1] recomputed (the last token predicts nothing), at positions shifted down by one,
attending to the cached keys before P + i and to its own earlier suffix tokens. The suffixes of many
candidates are laid end to end in a single row of packed tokens; a 4D additive mask
(1, 1, T, L + T) gives each its own view (0 = attend, dtype min = blocked):

    past keys:   candidate i's queries see cached positions [0, P + i)
    packed keys: and the packed tokens of candidate i up to themselves (causal within the suffix)

Work per step is at most sum_i (L - P - i - 2) token-forwards: the `prefix` engine's chunk redundancy is gone.
A candidate's suffix may also be computed in parts (`Partial`): a later part resumes from the keys and values
of the earlier ones, which go in the cache after the chain's and which only that candidate's tokens see. The
lookahead estimates use this to widen a window at the cost of the tokens added, and the pruning loop to
resume, after a deletion, each candidate's suffix up to the deleted token (`ChainScorer`).

The mask alone would make attention dense over the whole pack (every packed token against every other,
T x (L + T), most of it blocked), which cost a quarter of an exact pass on CPU. So the attention is computed
by its structure instead (`PackLayout`): each packed token against the cached keys of the chain (up to the
last any of them sees, a prefix of each row allowed) and against its own candidate's keys (candidates laid
out on a padded grid, causal within), with one softmax over the two. Models whose attention needs more than
that (soft-capped scores, sliding windows, attention sinks) get their own attention function with the dense
mask, built only then. Packs are kept to `PACK_TOKENS` (and within `max_batch_tokens`). Same numbers as
`naive` to rounding.

A pack is run by `run_pack`: alone, or, when several chains are pruned at once (`together`), in one forward
with the other chains' packs waiting at the same moment (`run_packs`): their tokens end to end, their keys
side by side, each pack attending only to its own. Small forwards use a CPU poorly; larger ones, less so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from chainprune.models.attention import attention_override
from chainprune.scoring import together
from chainprune.scoring.logprobs import ForwardStats, output_cache, run_decoder, target_logprobs
from chainprune.scoring.objectives import BestContinuation, Continuation, CurrentChain, forward_current
from chainprune.types import ChainIds

PACK_TOKENS = 1024  # packed tokens per forward: the dense mask grows as T x (L + T)
# A pack with fewer (packed tokens x keys) than this attends through the model's own function with its dense
# mask (built once per forward): for small packs one fused call beats the structured attention's dozen small
# ones (CPU, 9 heads: 0.45 vs 1.31 ms at 60 x 260, 2.6 vs 3.5 ms at 234 x 454; 36 vs 12 ms at 1155 x 1355).
DENSE_BELOW = 2**17


@dataclass
class Partial:
    """What has been computed of one candidate's suffix on the current chain: its first `done` packed tokens'
    keys and values per layer, hidden states and target log-probs (0 where the objective does not count
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


@torch.no_grad()
def score_packed(
    model: Any,
    ids: ChainIds,
    objective: str,
    max_batch_tokens: int,
    stats: ForwardStats,
    positions: list[int] | None = None,
    current: CurrentChain | None = None,
    keep: BestContinuation | None = None,
    partials: dict[int, Partial] | None = None,
) -> tuple[float, torch.Tensor]:
    """(objective of the current chain, objective after deleting each reasoning token (m,) float64).

    With `positions`, only those candidates are scored; the others are NaN. `current`: this chain's forward
    when the caller already ran it (`forward_current`), so it is not run twice. `keep` is offered each
    candidate's recomputed suffix, to build the next chain's forward from. `partials` (candidate -> `Partial`,
    for this chain only): candidates are resumed from what it holds, and what is computed is added to it.
    """
    return _packed_scores(model, ids, objective, max_batch_tokens, stats, positions, None, current, keep, partials)


@torch.no_grad()
def score_lookahead(
    model: Any,
    ids: ChainIds,
    objective: str,
    max_batch_tokens: int,
    stats: ForwardStats,
    window: int,
    current: CurrentChain | None = None,
    positions: list[int] | None = None,
    partials: dict[int, Partial] | None = None,
) -> tuple[float, torch.Tensor]:
    """APPROXIMATE: (objective of the current chain, estimated objective after deleting each reasoning token).

    A deletion's damage shows mostly in the tokens right after it. Candidate i's estimate recomputes exactly
    the first `window` targets after the deletion (as `packed` does, suffixes cut to window - 1 packed tokens)
    and takes the later targets' log-probs unchanged from the current chain. With `window` at least the
    suffix length the estimate is the exact objective. Work: about m x window token-forwards per pass.
    `positions` and `partials` as for `score_packed`: a candidate resumed from a `Partial` longer than the
    window is estimated from all of it, and widening a window costs only the tokens added.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    return _packed_scores(model, ids, objective, max_batch_tokens, stats, positions, window, current, None, partials)


def _packed_scores(
    model: Any,
    ids: ChainIds,
    objective: str,
    max_batch_tokens: int,
    stats: ForwardStats,
    positions: list[int] | None,
    window: int | None,
    current: CurrentChain | None,
    keep: BestContinuation | None,
    partials: dict[int, Partial] | None,
) -> tuple[float, torch.Tensor]:
    """Exact candidate scores (window None), or lookahead estimates recomputing `window` targets each."""
    m = len(ids.reasoning_ids)
    current = current or forward_current(model, ids, objective, stats)
    seq, n_prompt, start = current.seq, current.n_prompt, current.candidate_start
    device, length = seq.device, seq.shape[0]
    scores = torch.full((m,), float("nan"), dtype=torch.float64, device=device)
    wanted = list(range(m)) if positions is None else sorted(positions)
    if not wanted:
        return current.base, scores.cpu()
    stored = {} if partials is None else partials

    # Candidate i: unchanged counted targets before P + i, then seq[P + i + 1], which now follows P + i - 1.
    cand = torch.tensor(wanted, device=device)
    scores[cand] = current.unchanged_prefix(cand) + current.first_target(model, cand)
    # Then its packed suffix (length - P - i - 2 tokens when whole), of which `reach` is computed (from what is
    # stored on, so the first `done` need not be); targets after the reach keep the current chain's log-probs.
    whole = {i: length - n_prompt - i - 2 for i in wanted}
    done = {i: stored[i].done if i in stored else 0 for i in wanted}
    reach = {i: n if window is None else max(min(n, window - 1), done[i]) for i, n in whole.items()}
    first_tail = torch.clamp(cand + 2 + torch.tensor([reach[i] for i in wanted], device=device), min=start + 1 - n_prompt)
    last = length - n_prompt
    scores[cand] += current.base_cumsum[last] - current.base_cumsum[torch.clamp(first_tail, max=last)]
    for i in wanted:
        if done[i]:
            scores[i] += stored[i].logp.sum()
    spans = {i: (done[i], reach[i]) for i in wanted if reach[i] > done[i]}
    _score_packs(model, seq, n_prompt, start, current.layers, spans, stored, max_batch_tokens, scores, stats, partials is not None)
    if keep is not None:
        _offer_best(keep, scores, {i: whole[i] for i in wanted if reach[i] == whole[i]}, stored)
    return current.base, scores.cpu()


def _offer_best(keep: BestContinuation, scores: torch.Tensor, complete: dict[int, int], stored: dict[int, Partial]) -> None:
    """Offer `keep` the best of the candidates whose whole suffix was scored (`complete`: candidate -> its
    length), when its rows are at hand."""
    if not complete:
        return
    best = max(complete, key=lambda i: (float(scores[i]), -i))
    rows = stored.get(best)
    if rows is not None and rows.done == complete[best] and keep.wants(best, float(scores[best])):
        keep.offer(Continuation(cut=best, score=float(scores[best]), layers=rows.layers, hidden=rows.hidden, logp=rows.logp))


def _score_packs(
    model: Any,
    seq: torch.Tensor,
    n_prompt: int,
    start: int,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    spans: dict[int, tuple[int, int]],
    stored: dict[int, Partial],
    max_batch_tokens: int,
    scores: torch.Tensor,
    stats: ForwardStats,
    record: bool,
) -> None:
    """Compute packed tokens [begin, end) of each candidate i's suffix (`spans[i]`), in packs of bounded size,
    each candidate resumed from `stored[i]` (its first `begin` tokens). Adds their log-probs to `scores`.
    With `record`, what is computed is added to `stored`; without, only the best candidate of each pack whose
    whole suffix was computed is kept there (to offer as the next forward's continuation)."""
    pack_limit = max(1, min(PACK_TOKENS, max_batch_tokens))
    group: dict[int, tuple[int, int]] = {}
    group_tokens = 0
    for i, (begin, end) in spans.items():
        if group and group_tokens + end - begin > pack_limit:
            _score_pack(model, seq, n_prompt, start, layers, group, stored, scores, stats, record)
            group, group_tokens = {}, 0
        group[i] = (begin, end)
        group_tokens += end - begin
    if group:
        _score_pack(model, seq, n_prompt, start, layers, group, stored, scores, stats, record)


def _score_pack(
    model: Any,
    seq: torch.Tensor,
    n_prompt: int,
    start: int,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    spans: dict[int, tuple[int, int]],
    stored: dict[int, Partial],
    scores: torch.Tensor,
    stats: ForwardStats,
    record: bool,
) -> None:
    """One forward of the packed spans (see `_score_packs`)."""
    device, length = seq.device, seq.shape[0]
    owner, offset = [], []  # per packed token: which candidate, and its index within that suffix
    for i, (begin, end) in spans.items():
        owner += [i] * (end - begin)
        offset += range(begin, end)
    owner_t = torch.tensor(owner, device=device)  # (T,)
    offset_t = torch.tensor(offset, device=device)
    inputs = seq[n_prompt + owner_t + 1 + offset_t]  # suffix token k of candidate i is seq[P + i + 1 + k]
    targets = seq[n_prompt + owner_t + 2 + offset_t]
    positions = n_prompt + owner_t + offset_t  # shifted down by one: token P + i was deleted
    total = owner_t.shape[0]
    resumed = [stored[i] for i, (begin, _) in spans.items() if begin]
    runs = [(begin, end - begin) for begin, end in spans.values()]

    # keys: the current chain's [0, L), then the resumed candidates' stored suffixes, then the packed tokens
    past_layers = layers
    if resumed:
        past_layers = [
            (torch.cat([k] + [p.layers[n][0] for p in resumed], dim=2), torch.cat([v] + [p.layers[n][1] for p in resumed], dim=2))
            for n, (k, v) in enumerate(layers)
        ]
    # packed token k of candidate i predicts seq[P + i + 2 + k], at candidate-sequence index P + i + 1 + k
    counted = (positions + 1) >= start
    layout = PackLayout.of(layers[0][0].shape[2], n_prompt + owner_t, runs)
    pack = Pack(inputs, positions, past_layers, layout, counted, targets[counted])
    result = run_pack(model, pack)
    hidden, new_keys = result.hidden, result.layers  # what is kept of a candidate is a view of these
    stats.add(1, total)
    scores.index_add_(0, owner_t[counted], result.logp)
    row_logp = torch.zeros(total, dtype=result.logp.dtype, device=device).masked_scatter_(counted, result.logp)

    def computed(i: int, first: int, count: int) -> Partial:
        rows = slice(first, first + count)
        more = Partial([(k[:, :, rows], v[:, :, rows]) for k, v in new_keys], hidden[rows], row_logp[rows])
        return stored[i].then(more) if spans[i][0] else more

    whole = {i: length - n_prompt - i - 2 for i in spans}
    first = 0
    complete = [i for i, (_, end) in spans.items() if end == whole[i]]
    best = max(complete, key=lambda i: (float(scores[i]), -i)) if complete else None
    for i, (begin, end) in spans.items():
        if record or i == best:
            stored[i] = computed(i, first, end - begin)
        first += end - begin


@dataclass
class PackLayout:
    """Who attends to what in one packed forward. Keys: the current chain's [0, past), then the stored suffixes
    of resumed candidates (`stored` keys), then the T packed tokens, which form runs, one per candidate, each
    resuming after its candidate's stored keys. Packed token t sees the chain's first `sees[t]` keys, its own
    run's stored keys, and its run's packed tokens up to itself."""

    past: int
    stored: int
    sees: torch.Tensor  # (T,) chain keys visible to each packed token
    queries: torch.Tensor  # (C, n) packed token at each cell of the runs' padded grid (row = run), 0 in padding
    keys: torch.Tensor  # (C, s + n) each run's own keys (stored, then packed) as indices after `past`, 0 in padding
    cell: torch.Tensor  # (T,) each packed token's flat cell in the query grid
    hidden_past: torch.Tensor  # (T, V) bool: chain key blocked, over the V = max(sees) keys anyone sees
    hidden_own: torch.Tensor  # (C, n, s + n) bool: own key blocked (padding, or a later packed token)
    masks: dict = field(default_factory=dict, repr=False)  # dense masks built so far, by dtype

    @classmethod
    def of(cls, past: int, sees: torch.Tensor, runs: list[tuple[int, int]]) -> PackLayout:
        """`runs`: (stored keys, packed tokens) of each run, in the order both are laid out."""
        device = sees.device
        n_stored = torch.tensor([s for s, _ in runs], device=device)
        n_packed = torch.tensor([n for _, n in runs], device=device)
        s_steps = torch.arange(int(n_stored.max()), device=device)
        n_steps = torch.arange(int(n_packed.max()), device=device)
        s_valid = s_steps[None, :] < n_stored[:, None]  # (C, s)
        n_valid = n_steps[None, :] < n_packed[:, None]  # (C, n)
        s_first = torch.cumsum(n_stored, 0) - n_stored
        n_first = torch.cumsum(n_packed, 0) - n_packed
        stored = int(n_stored.sum())
        queries = torch.where(n_valid, n_first[:, None] + n_steps[None, :], 0)
        keys = torch.cat([torch.where(s_valid, s_first[:, None] + s_steps[None, :], 0), torch.where(n_valid, stored + queries, 0)], dim=1)
        causal = n_steps[None, :] <= n_steps[:, None]  # (n, n) query row, key column
        width = n_steps.shape[0]
        allowed_own = torch.cat([s_valid[:, None, :].expand(-1, width, -1), causal[None] & n_valid[:, None, :]], dim=2)
        hidden_past = torch.arange(int(sees.max()), device=device)[None, :] >= sees[:, None]
        cell = torch.arange(n_valid.numel(), device=device)[n_valid.flatten()]
        return cls(past, stored, sees, queries, keys, cell, hidden_past, ~allowed_own)

    def dense_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """The same as an additive mask (1, 1, T, past + stored + T), for attention functions that take one
        (built once per dtype)."""
        if dtype not in self.masks:
            self.masks[dtype] = self._dense_mask(dtype)
        return self.masks[dtype]

    def _dense_mask(self, dtype: torch.dtype) -> torch.Tensor:
        total, visible = self.sees.shape[0], self.hidden_past.shape[1]
        allowed = torch.zeros(total, self.past + self.stored + total, dtype=torch.bool, device=self.sees.device)
        allowed[:, :visible] = ~self.hidden_past
        runs, width, own = self.hidden_own.shape
        rows = self.queries[:, :, None].expand(runs, width, own)
        columns = self.past + self.keys[:, None, :].expand(runs, width, own)
        real = ~self.hidden_own & (self.cell.new_zeros(runs * width, dtype=torch.bool).index_fill_(0, self.cell, True)).view(runs, width, 1)
        allowed[rows[real], columns[real]] = True
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[None, None]

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
        """query (1, H, T, d), key and value (1, KVH, past + stored + T, d) -> (1, T, H, d), as the attention
        functions of transformers return. Query head h uses KV head h // (H / KVH), as `repeat_kv`."""
        _, heads, total, dim = query.shape
        kv_heads, (runs, width) = key.shape[1], self.queries.shape
        groups, visible = heads // kv_heads, self.hidden_past.shape[1]
        work = torch.promote_types(query.dtype, torch.float32)
        q = query[0].to(work).reshape(kv_heads, groups, total, dim) * scaling  # (KVH, G, T, d)
        k, v = key[0, :, None].to(work), value[0, :, None].to(work)  # (KVH, 1, keys, d)
        k_own, v_own = k[:, :, self.past :][:, :, self.keys], v[:, :, self.past :][:, :, self.keys]  # (KVH, 1, C, s + n, d)

        seen = (q @ k[:, :, :visible].transpose(-1, -2)).masked_fill_(self.hidden_past, float("-inf"))  # (KVH, G, T, V)
        own = (q[:, :, self.queries] @ k_own.transpose(-1, -2)).masked_fill_(self.hidden_own, float("-inf"))  # (KVH, G, C, n, s + n)

        # one softmax over [chain keys, own keys]: a shared maximum per query row, then the two parts' sums
        flat = (kv_heads, groups, runs * width)
        top = torch.maximum(seen.amax(-1), own.amax(-1).reshape(flat)[..., self.cell])  # (KVH, G, T)
        seen.sub_(top[..., None]).exp_()
        top_grid = torch.full(flat, float("inf"), dtype=work, device=q.device)  # padding cells: weight 0
        top_grid[..., self.cell] = top
        own.sub_(top_grid.reshape(own.shape[:-1])[..., None]).exp_()
        weight = seen.sum(-1) + own.sum(-1).reshape(flat)[..., self.cell]
        out = seen @ v[:, :, :visible] + (own @ v_own).reshape(*flat, dim)[:, :, self.cell]  # (KVH, G, T, d)
        out = (out / weight[..., None]).reshape(heads, total, dim)
        return out.transpose(0, 1)[None].to(query.dtype)


@dataclass
class Pack:
    """One packed forward: its tokens and their positions, the keys and values before them (the chain's, then
    the resumed candidates' stored suffixes), who attends to what, and the targets the objective counts."""

    inputs: torch.Tensor  # (T,) token ids
    positions: torch.Tensor  # (T,)
    past: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (1, kv_heads, keys before, head_dim)
    layout: PackLayout  # who attends to what, among those keys and the packed tokens
    counted: torch.Tensor  # (T,) bool: the packed tokens whose target the objective counts
    targets: torch.Tensor  # (counted,) those targets

    @property
    def tokens(self) -> int:
        return self.inputs.shape[0]

    @property
    def keys_before(self) -> int:
        return self.past[0][0].shape[2]


@dataclass
class PackResult:
    hidden: torch.Tensor  # (T, d) last hidden states
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer the packed tokens' (keys, values), (1, kv_heads, T, head_dim)
    logp: torch.Tensor  # (counted,) float64 log-probs of the counted targets


def run_pack(model: Any, pack: Pack) -> PackResult:
    """Run one pack: on its own, or, in a thread pruning alongside others (`together.run_together`), as part
    of one forward with the packs the other threads are waiting on."""
    shared = together.current()
    return shared.submit(pack) if shared is not None else run_packs(model, [pack])[0]


@torch.no_grad()
def run_packs(model: Any, packs: list[Pack]) -> list[PackResult]:
    """Packs, of one chain or of several, run as one forward: their tokens laid end to end, their keys before
    them side by side in one cache, each pack's tokens attending only to its own (`PackAttention`). The LM
    head runs once over every pack's counted rows."""
    past = packs[0].past
    if len(packs) > 1:
        past = [
            (torch.cat([p.past[n][0] for p in packs], dim=2), torch.cat([p.past[n][1] for p in packs], dim=2))
            for n in range(len(past))
        ]
    inputs = torch.cat([p.inputs for p in packs])
    positions = torch.cat([p.positions for p in packs])
    with attention_override(model, PackAttention(packs)):
        out = run_decoder(model, DynamicCache(ddp_cache_data=past), input_ids=inputs[None], position_ids=positions[None], use_cache=True)
    hidden = out.last_hidden_state[0]  # (T, d)
    total = inputs.shape[0]
    new_keys = [(layer.keys[:, :, -total:], layer.values[:, :, -total:]) for layer in output_cache(out).layers]
    counted = torch.cat([p.counted for p in packs])
    logp = target_logprobs(model, hidden[counted], torch.cat([p.targets for p in packs]))
    results, first, first_counted = [], 0, 0
    for p in packs:
        rows, n_counted = slice(first, first + p.tokens), int(p.counted.sum())
        # copied out of the cache (which also holds the keys before them), so a kept view holds only these
        layers = [(k[:, :, rows].clone(), v[:, :, rows].clone()) for k, v in new_keys]
        results.append(PackResult(hidden[rows], layers, logp[first_counted : first_counted + n_counted]))
        first, first_counted = first + p.tokens, first_counted + n_counted
    return results


class PackAttention:
    """An attention function (see `attention_override`) for packs run as one forward. The cache holds every
    pack's keys before its tokens, pack after pack, then every packed token's; each pack's queries attend to its
    own keys by its layout's structure (`PackLayout.attend`; one pack at a time: laid on one padded grid, packs
    of unlike runs padded each other out), or, for a small pack (`DENSE_BELOW`) and for what a layout does not
    model (soft-capped scores, sliding windows, attention sinks, dropout), through the model's own function with
    the layout's dense mask."""

    structured = True  # False: every call goes to the model's own function with the dense mask (bench_attention.py)

    def __init__(self, packs: list[Pack]):
        self.layouts = [p.layout for p in packs]
        self.before = sum(p.keys_before for p in packs)
        self.spans = []  # per pack: its keys before its tokens, and its packed tokens
        key, token = 0, 0
        for p in packs:
            self.spans.append((slice(key, key + p.keys_before), slice(token, token + p.tokens)))
            key, token = key + p.keys_before, token + p.tokens

    def __call__(self, original, module, query, key, value, attention_mask, *args, **kwargs):
        plain = all(kwargs.get(name) is None for name in ("softcap", "sliding_window", "s_aux", "position_bias"))
        plain = plain and self.structured and not kwargs.get("dropout", 0.0) and query.shape[0] == 1
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        outputs = []
        for layout, (keys_before, tokens) in zip(self.layouts, self.spans):
            q, k, v = query[:, :, tokens], key, value
            if len(self.layouts) > 1:
                own = slice(self.before + tokens.start, self.before + tokens.stop)
                k = torch.cat([key[:, :, keys_before], key[:, :, own]], dim=2)
                v = torch.cat([value[:, :, keys_before], value[:, :, own]], dim=2)
            if plain and q.shape[2] * k.shape[2] >= DENSE_BELOW:
                outputs.append(layout.attend(q, k, v, scaling))
            else:
                outputs.append(original(module, q, k, v, layout.dense_mask(q.dtype), *args, **kwargs)[0])
        return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)), None
