"""Exactness: every fast engine returns what full recomputation returns (float64, tiny seeded models)."""

import pytest
import torch

from chainprune.chains import tokenize_chain
from chainprune.pruning import Approximation, prune_chain
from chainprune.scoring import ENGINES, ChainCache, ForwardStats, ScoreRequest, ScoringOptions, objective_start, reference_objective
from chainprune.types import Chain

from conftest import gsm8k_records, make_model


def gsm8k_chains(n, max_chars=130):
    chains = []
    for i, record in enumerate(gsm8k_records(40)):
        reasoning, answer = record["answer"].split("####")
        reasoning = reasoning.strip()
        if len(reasoning) <= max_chars:
            chains.append(Chain(f"gsm8k-{i}", record["question"], reasoning, f"The answer is {answer.strip()}."))
    return chains[:n]


CHAINS = gsm8k_chains(4) + [
    Chain("short", "2+2?", "2+2=4.", "The answer is 4.", "Be brief."),
    Chain("one", "Q?", "4", "A: 4"),
]


FAST_ENGINES = [e for e in ENGINES if e != "naive"]


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("objective", ["joint", "answer"])
@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.id)
def test_fast_engine_candidates_equal_naive(tiny_pruner, chain, objective, engine):
    # packed attends by structure, or through the model's attention with a dense mask when a pack is small:
    # both paths, every pack
    for dense_below in (0, 2**62) if engine == "packed" else (ScoringOptions.dense_below,):
        check_engine_equals_naive(tiny_pruner, chain, objective, engine, ScoringOptions(dense_below=dense_below))


def check_engine_equals_naive(tiny_pruner, chain, objective, engine, options=ScoringOptions()):
    ids = tokenize_chain(tiny_pruner.tokenizer, chain)
    base_ref, cand_ref = ENGINES["naive"](tiny_pruner.model, ScoreRequest(ids, objective, 10**6))
    expected_base = reference_objective(
        tiny_pruner.model, ids.input_ids, objective_start(len(ids.prompt_ids), len(ids.reasoning_ids), objective)
    )
    assert base_ref == pytest.approx(expected_base, rel=1e-12)
    for budget in (1, 64, 10**6):  # from one row per forward to everything at once
        stats = ForwardStats()
        base, cand = ENGINES[engine](tiny_pruner.model, ScoreRequest(ids, objective, budget, stats=stats, options=options))
        assert base == pytest.approx(base_ref, rel=1e-12)
        torch.testing.assert_close(cand, cand_ref, rtol=1e-10, atol=1e-10)
        assert stats.token_forwards < (len(ids.reasoning_ids) + 1) * len(ids.input_ids) or len(ids.reasoning_ids) < 3


@pytest.mark.parametrize("engine", list(ENGINES))
def test_engines_score_a_subset_of_candidates(tiny_pruner, engine):
    ids = tokenize_chain(tiny_pruner.tokenizer, CHAINS[1])
    _, full = ENGINES["naive"](tiny_pruner.model, ScoreRequest(ids, "joint", 10**6))
    subset = [0, 2, 3, len(ids.reasoning_ids) - 1]
    _, part = ENGINES[engine](tiny_pruner.model, ScoreRequest(ids, "joint", 128, positions=subset))
    torch.testing.assert_close(part[subset], full[subset], rtol=1e-10, atol=1e-10)
    others = [i for i in range(len(ids.reasoning_ids)) if i not in subset]
    assert torch.isnan(part[others]).all()


def test_packed_does_no_redundant_work(tiny_pruner):
    ids = tokenize_chain(tiny_pruner.tokenizer, CHAINS[1])
    p, m, length = len(ids.prompt_ids), len(ids.reasoning_ids), len(ids.input_ids)
    stats = ForwardStats()
    ENGINES["packed"](tiny_pruner.model, ScoreRequest(ids, "joint", 10**6, stats=stats))
    assert stats.token_forwards == length + sum(max(0, length - p - i - 2) for i in range(m))


def test_naive_candidates_equal_reference_forward(tiny_pruner):
    ids = tokenize_chain(tiny_pruner.tokenizer, CHAINS[0])
    _, cand = ENGINES["naive"](tiny_pruner.model, ScoreRequest(ids, "joint", 200))
    p = len(ids.prompt_ids)
    for i in (0, len(ids.reasoning_ids) // 2, len(ids.reasoning_ids) - 1):
        seq = ids.input_ids[: p + i] + ids.input_ids[p + i + 1 :]
        assert float(cand[i]) == pytest.approx(reference_objective(tiny_pruner.model, seq, p), rel=1e-12)


@pytest.mark.parametrize("objective", ["joint", "answer"])
def test_greedy_runs_delete_in_identical_order(tiny_pruner, objective):
    for chain in CHAINS[1:4]:
        traces = {
            engine: prune_chain(tiny_pruner, chain, keep=[0.3], objective=objective, engine=engine, max_batch_tokens=4096)
            for engine in ENGINES
        }
        for engine in FAST_ENGINES:
            assert traces[engine].deletion_order == traces["naive"].deletion_order
            torch.testing.assert_close(
                torch.tensor(traces[engine].objective_values), torch.tensor(traces["naive"].objective_values),
                rtol=1e-10, atol=1e-10,
            )
            assert traces[engine].token_forwards < traces["naive"].token_forwards


@pytest.mark.parametrize("seed", [1, 2])
def test_orders_agree_on_other_seeded_models(tiny_tokenizer, seed):
    from chainprune.models import LoadedModel

    pruner = LoadedModel(make_model(len(tiny_tokenizer), seed=seed, layers=3), tiny_tokenizer, f"tiny-{seed}")
    chain = CHAINS[1]
    orders = [prune_chain(pruner, chain, keep=[0.1], engine=e).deletion_order for e in ENGINES]
    assert all(order == orders[0] for order in orders)


APPROXIMATIONS = [
    Approximation(),
    Approximation(per_step=3),
    Approximation(screen=4, refresh=3),
    Approximation(screen=3, lookahead=4),
]


@pytest.mark.parametrize("approximation", APPROXIMATIONS, ids=lambda a: str(a.describe()))
@pytest.mark.parametrize("objective", ["joint", "answer"])
def test_objective_values_recomputed_by_plain_forward(tiny_pruner, objective, approximation):
    """Every trace's objective_values follow from its ids alone, by a plain full forward (approximate too)."""
    trace = prune_chain(tiny_pruner, CHAINS[0], keep=[0.5, 0.3], objective=objective, approximation=approximation)
    assert trace.mode == approximation.describe()
    deleted: set[int] = set()
    for step, value in enumerate(trace.objective_values):
        if step:
            deleted.add(trace.deletion_order[step - 1])
        reasoning = [t for i, t in enumerate(trace.reasoning_ids) if i not in deleted]
        start = objective_start(len(trace.prompt_ids), len(reasoning), objective)
        expected = reference_objective(tiny_pruner.model, trace.prompt_ids + reasoning + trace.answer_ids, start)
        assert value == pytest.approx(expected, rel=1e-10)


def test_trace_record_matches_design(tiny_pruner):
    trace = prune_chain(tiny_pruner, CHAINS[0], keep=[0.9, 0.5])
    record = trace.to_json()
    for key in ("id", "pruner", "objective", "prompt_ids", "reasoning_ids", "answer_ids", "deletion_order",
                "objective_values", "tokens", "pruned"):
        assert key in record
    n = len(trace.reasoning_ids)
    assert len(trace.deletion_order) == n - n // 2 and sorted(trace.deletion_order) == sorted(set(trace.deletion_order))
    assert set(record["pruned"]) == {"0.9", "0.5"}
    assert record["pruned"]["0.5"]["num_tokens"] == n // 2
    steps = {t["position"]: t["deleted_step"] for t in record["tokens"]}
    assert [p for p, _ in sorted(((p, s) for p, s in steps.items() if s), key=lambda x: x[1])] == trace.deletion_order
    kept = [t for i, t in enumerate(trace.reasoning_ids) if steps[i] is None]
    assert record["pruned"]["0.5"]["text"] == tiny_pruner.tokenizer.decode(kept)
    assert "mode" not in record  # exact runs carry no approximation marker


def test_empty_reasoning_gives_trace_without_deletions(tiny_pruner):
    trace = prune_chain(tiny_pruner, Chain("e", "Q?", "", "The answer is 3."), keep=[0.5])
    assert trace.deletion_order == [] and trace.reasoning_ids == [] and len(trace.objective_values) == 1
    assert trace.pruned["0.5"].num_tokens == 0


@pytest.mark.slow
def test_bundled_model_prefix_equals_naive(bundled_pruner):
    chain = Chain("b", "What is 3 + 4?", "3 + 4 = 7, so the total is 7.", "The answer is 7.")
    ids = tokenize_chain(bundled_pruner.tokenizer, chain)
    _, naive = ENGINES["naive"](bundled_pruner.model, ScoreRequest(ids, "joint", 8192))
    _, prefix = ENGINES["prefix"](bundled_pruner.model, ScoreRequest(ids, "joint", 8192))
    torch.testing.assert_close(prefix, naive, rtol=1e-4, atol=2e-3)  # float32: agreement to rounding


@torch.no_grad()
def token_logprobs(model, tokens):
    logits = model(input_ids=torch.tensor([tokens])).logits[0].double()
    return torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(tokens[1:])[:, None])[:, 0]


def brute_force_lookahead(model, ids, objective, window):
    """Every candidate's lookahead estimate from full forwards: the candidate's own log-probs for its first
    `window` targets from the deletion on, the current chain's log-probs for every later target."""
    p, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    seq = ids.input_ids
    lp_cur = token_logprobs(model, seq)
    start = objective_start(p, m - 1, objective)
    estimates = []
    for i in range(m):
        cand = seq[: p + i] + seq[p + i + 1 :]
        lp_cand = token_logprobs(model, cand)
        total = 0.0
        for k in range(start, len(cand)):  # candidate target index k is original index k + 1 from p + i on
            total += float(lp_cand[k - 1]) if k < p + i + window else float(lp_cur[k])
        estimates.append(total)
    return estimates


@pytest.mark.parametrize("objective", ["joint", "answer"])
def test_lookahead_estimate_equals_brute_force(tiny_pruner, objective):
    from chainprune.scoring.packed import score_lookahead

    ids = tokenize_chain(tiny_pruner.tokenizer, CHAINS[1])
    for window in (1, 3, 8):
        _, est = score_lookahead(tiny_pruner.model, ScoreRequest(ids, objective, 64), window)
        expected = brute_force_lookahead(tiny_pruner.model, ids, objective, window)
        assert est.tolist() == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_lookahead_with_a_full_window_is_exact(tiny_pruner):
    from chainprune.scoring.packed import score_lookahead

    ids = tokenize_chain(tiny_pruner.tokenizer, CHAINS[0])
    _, exact = ENGINES["naive"](tiny_pruner.model, ScoreRequest(ids, "joint", 10**6))
    stats = ForwardStats()
    _, est = score_lookahead(tiny_pruner.model, ScoreRequest(ids, "joint", 256, stats=stats), len(ids.input_ids))
    torch.testing.assert_close(est, exact, rtol=1e-10, atol=1e-10)
    small = ForwardStats()
    score_lookahead(tiny_pruner.model, ScoreRequest(ids, "joint", 256, stats=small), 4)
    assert small.token_forwards <= len(ids.input_ids) + 3 * len(ids.reasoning_ids) < stats.token_forwards


@pytest.mark.parametrize("engine", ["prefix", "packed"])
def test_lookahead_screening_everything_is_exact_greedy(tiny_pruner, engine):
    chain = CHAINS[1]
    exact = prune_chain(tiny_pruner, chain, keep=[0.8], engine=engine)
    n = len(exact.reasoning_ids)
    approx = prune_chain(tiny_pruner, chain, keep=[0.8], engine=engine,
                         approximation=Approximation(screen=n, lookahead=2))
    assert approx.mode == {"screen": n, "lookahead": 2}
    assert approx.deletion_order == exact.deletion_order
    assert approx.objective_values == pytest.approx(exact.objective_values, rel=1e-10)


@pytest.mark.parametrize("objective", ["joint", "answer"])
def test_resumed_suffixes_equal_fresh_ones(tiny_pruner, objective):
    """Widening estimates and exact re-scoring resume from what earlier calls on the chain computed, and give
    the numbers a fresh computation gives; only the tokens not yet computed are run."""
    from chainprune.scoring.chain_state import forward_current
    from chainprune.scoring.packed import score_lookahead, score_packed

    model, ids = tiny_pruner.model, tokenize_chain(tiny_pruner.tokenizer, CHAINS[0])
    m = len(ids.reasoning_ids)
    _, exact = ENGINES["naive"](model, ScoreRequest(ids, objective, 10**6))
    current = forward_current(model, ids, objective, ForwardStats())
    cache, stats = ChainCache(current=current, partials={}), ForwardStats()
    partials = cache.partials
    score_lookahead(model, ScoreRequest(ids, objective, 64, stats=stats, cache=cache), 3)
    assert stats.token_forwards == sum(min(2, len(ids.input_ids) - len(ids.prompt_ids) - i - 2) for i in range(m))
    assert all(p.done == min(2, len(ids.input_ids) - len(ids.prompt_ids) - i - 2) for i, p in partials.items())
    some = [0, 2, m // 2, m - 1]
    before = stats.token_forwards
    _, wider = score_lookahead(model, ScoreRequest(ids, objective, 64, positions=some, stats=stats, cache=cache), 6)
    _, fresh = score_lookahead(model, ScoreRequest(ids, objective, 64, cache=ChainCache(current=current)), 6)
    torch.testing.assert_close(wider[some], fresh[some], rtol=1e-10, atol=1e-10)
    assert torch.isnan(wider[1]) and stats.token_forwards - before == sum(partials[i].done - min(2, partials[i].done) for i in some)
    assert cache.best.kept is None  # estimates offer no continuation
    _, scores = score_packed(model, ScoreRequest(ids, objective, 64, positions=some[:3], stats=stats, cache=cache))
    torch.testing.assert_close(scores[some[:3]], exact[some[:3]], rtol=1e-10, atol=1e-10)
    best = max(some[:3], key=lambda i: (float(exact[i]), -i))
    assert cache.best.kept.cut == best and cache.best.kept.hidden.shape[0] == len(ids.input_ids) - len(ids.prompt_ids) - best - 2


@pytest.mark.parametrize("objective", ["joint", "answer"])
def test_exact_packed_resumes_each_candidate_from_before_the_last_deletion(tiny_pruner, objective, monkeypatch):
    """Exact `packed` greedy keeps every candidate's suffix; after deleting the token at index j, candidate i < j
    keeps its first j - i - 2 suffix tokens (they read only tokens before j) and computes the rest. Same
    deletions and objectives as without keeping, fewer token-forwards by exactly that many, and as naive."""

    chain = CHAINS[0]
    passes = []
    kept = prune_chain(tiny_pruner, chain, keep=[0.4], objective=objective, engine="packed",
                       on_scores=lambda remaining, scores: passes.append(list(remaining)))
    plain = prune_chain(tiny_pruner, chain, keep=[0.4], objective=objective, engine="packed",
                        options=ScoringOptions(keep_suffix_bytes=-1))
    assert plain.options == {"keep_suffix_bytes": -1} and kept.options is None  # the trace says which setting made it
    naive = prune_chain(tiny_pruner, chain, keep=[0.4], objective=objective, engine="naive")
    assert kept.deletion_order == plain.deletion_order == naive.deletion_order
    assert kept.objective_values == pytest.approx(plain.objective_values, rel=1e-10, abs=1e-10)
    assert kept.objective_values == pytest.approx(naive.objective_values, rel=1e-10, abs=1e-10)
    # pass s + 1 resumes from pass s's suffixes: index j of the token deleted in pass s
    saved = sum((j - 2) * (j - 1) // 2 for j in (remaining.index(p) for remaining, p in zip(passes[:-1], kept.deletion_order)) if j > 2)
    assert saved > 0 and plain.token_forwards - kept.token_forwards == saved


def test_estimates_after_a_deletion_resume_from_the_suffixes_before_it(tiny_pruner):
    """Estimating after a deletion resumes each candidate before it from what the last chain computed (cut
    at the deleted token) and equals estimating afresh; a candidate's widened window too."""
    from chainprune.pruning import ChainScorer

    ids = tokenize_chain(tiny_pruner.tokenizer, CHAINS[0])
    m = len(ids.reasoning_ids)
    carried = ChainScorer(tiny_pruner.model, ids, "joint", "packed", 64)
    remaining = list(range(m))
    carried.estimates(remaining, 3)
    carried.estimates(remaining, 12, [0, 1])  # suffixes of 11 tokens for the first two candidates
    j = m - 3
    after = remaining[:j] + remaining[j + 1 :]
    carried.forward(after)  # the new chain's own forward, counted apart
    before = carried.stats.token_forwards
    got = carried.estimates(after, 12, [0, 1, j - 1, j])
    work = carried.stats.token_forwards - before
    fresh = ChainScorer(tiny_pruner.model, ids, "joint", "packed", 64)
    fresh.forward(after)
    start = fresh.stats.token_forwards
    expected = fresh.estimates(after, 12, [0, 1, j - 1, j])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10, equal_nan=True)
    # candidates 0 and 1 kept their 11 tokens (they end before j); j - 1 and j (after it) start afresh
    assert m > 20 and (fresh.stats.token_forwards - start) - work == 2 * 11


def test_margin_screening_everything_is_exact_greedy(tiny_pruner):
    chain = CHAINS[1]
    exact = prune_chain(tiny_pruner, chain, keep=[0.6], engine="packed")
    approx = prune_chain(tiny_pruner, chain, keep=[0.6], engine="packed",
                         approximation=Approximation(screen=1, lookahead=2, margin=1e9))
    assert approx.mode == {"screen": 1, "lookahead": 2, "margin": 1e9}
    assert approx.deletion_order == exact.deletion_order
    assert approx.objective_values == pytest.approx(exact.objective_values, rel=1e-10)
    assert approx.token_forwards < 2 * exact.token_forwards


@pytest.mark.parametrize("objective", ["joint", "answer"])
def test_incremental_forward_equals_a_fresh_one(tiny_pruner, objective):
    """After a deletion, the chain's forward reuses the shared front and equals a fresh forward."""
    from chainprune.scoring.chain_state import forward_current
    from chainprune.types import ChainIds

    ids = tokenize_chain(tiny_pruner.tokenizer, CHAINS[0])
    first = forward_current(tiny_pruner.model, ids, objective, ForwardStats())
    m = len(ids.reasoning_ids)
    for deleted in (0, m // 2, m - 1):
        after = ChainIds(ids.prompt_ids, ids.reasoning_ids[:deleted] + ids.reasoning_ids[deleted + 1 :], ids.answer_ids)
        stats = ForwardStats()
        incremental = forward_current(tiny_pruner.model, after, objective, stats, previous=first)
        fresh = forward_current(tiny_pruner.model, after, objective, ForwardStats())
        assert stats.token_forwards == len(after.input_ids) - len(ids.prompt_ids) - deleted
        assert incremental.base == pytest.approx(fresh.base, rel=1e-12)
        torch.testing.assert_close(incremental.base_logp, fresh.base_logp, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(incremental.hidden, fresh.hidden, rtol=1e-10, atol=1e-10)
        for (k1, v1), (k2, v2) in zip(incremental.layers, fresh.layers):
            torch.testing.assert_close(k1, k2, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("objective", ["joint", "answer"])
def test_forward_after_a_deletion_built_from_its_scoring_equals_a_fresh_one(tiny_pruner, objective):
    """The packed engine keeps the best candidate's recomputed suffix; the chain after that deletion is built
    from it with no forward (the last token's states are left out: nothing reads them), and equals a fresh
    forward where any objective or candidate reads it, the first targets it carries over included."""
    from chainprune.scoring.chain_state import forward_current
    from chainprune.scoring.objectives import objective_start
    from chainprune.scoring.packed import score_packed
    from chainprune.types import ChainIds

    ids = tokenize_chain(tiny_pruner.tokenizer, CHAINS[0])
    m, n_prompt = len(ids.reasoning_ids), len(ids.prompt_ids)
    current = forward_current(tiny_pruner.model, ids, objective, ForwardStats())
    for positions in (None, [1, m // 2], [m - 1]):
        cache = ChainCache(current=current)
        _, scores = score_packed(tiny_pruner.model, ScoreRequest(ids, objective, 8192, positions=positions, cache=cache))
        keep = cache.best
        wanted = list(range(m)) if positions is None else positions
        best = max(wanted, key=lambda i: (float(scores[i]), -i))
        assert keep.kept is not None and keep.kept.cut == best
        after = ChainIds(ids.prompt_ids, ids.reasoning_ids[:best] + ids.reasoning_ids[best + 1 :], ids.answer_ids)
        built = current.after_deletion(tiny_pruner.model, after, objective, keep.kept)
        fresh = forward_current(tiny_pruner.model, after, objective, ForwardStats())
        assert built.base == pytest.approx(fresh.base, rel=1e-12) == pytest.approx(float(scores[best]), rel=1e-12)
        read = objective_start(n_prompt, m - 1, objective) - n_prompt  # what the objective counts
        torch.testing.assert_close(built.base_logp[read:], fresh.base_logp[read:], rtol=1e-10, atol=1e-10)
        length = built.hidden.shape[0]
        assert length == fresh.hidden.shape[0] - 1
        torch.testing.assert_close(built.hidden, fresh.hidden[:length], rtol=1e-10, atol=1e-10)
        for (k1, v1), (k2, v2) in zip(built.layers, fresh.layers):
            torch.testing.assert_close(k1, k2[:, :, :length], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(v1, v2[:, :, :length], rtol=1e-10, atol=1e-10)
        carried = built.first_targets[: m - 1].clone()
        # the first pass scored every candidate: those before best - 1 are unchanged and carried over
        assert (~carried.isnan()).nonzero().flatten().tolist() == list(range(max(best - 1, 0)))
        every = torch.arange(m - 1)
        torch.testing.assert_close(built.first_target(tiny_pruner.model, every), fresh.first_target(tiny_pruner.model, every), rtol=1e-10, atol=1e-10)
        # another chain (a different deletion) is not built from it
        other = (best + 1) % m
        if ids.reasoning_ids[other] != ids.reasoning_ids[best]:
            wrong = ChainIds(ids.prompt_ids, ids.reasoning_ids[:other] + ids.reasoning_ids[other + 1 :], ids.answer_ids)
            assert current.after_deletion(tiny_pruner.model, wrong, objective, keep.kept) is None


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (3, 3)])
@pytest.mark.parametrize("stored", [(0, 0, 0), (2, 0, 3)])
def test_pack_attention_by_structure_equals_dense_masked_attention(heads, kv_heads, stored):
    from chainprune.scoring.packed import PackLayout

    gen = torch.Generator().manual_seed(0)
    past, packed, dim = 9, [4, 1, 3], 5
    runs = list(zip(stored, packed))
    total, n_stored = sum(packed), sum(stored)
    owner = torch.tensor([c for c, n in enumerate(packed) for _ in range(n)])
    stored_owner = torch.tensor([c for c, n in enumerate(stored) for _ in range(n)], dtype=torch.long)
    sees = torch.tensor([3, 3, 3, 3, 6, 8, 8, 8])  # chain keys each packed token may see
    query = torch.randn(1, heads, total, dim, generator=gen, dtype=torch.float64)
    key = torch.randn(1, kv_heads, past + n_stored + total, dim, generator=gen, dtype=torch.float64)
    value = torch.randn(1, kv_heads, past + n_stored + total, dim, generator=gen, dtype=torch.float64)
    order = torch.arange(total)
    allowed = torch.cat(
        [
            torch.arange(past)[None, :] < sees[:, None],
            owner[:, None] == stored_owner[None, :],
            (owner[:, None] == owner[None, :]) & (order[None, :] <= order[:, None]),
        ],
        dim=1,
    )
    groups = heads // kv_heads
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1), attn_mask=allowed[None, None], scale=0.3
    ).transpose(1, 2)
    layout = PackLayout.of(past, sees, runs)
    torch.testing.assert_close(layout.attend(query, key, value, 0.3), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(layout.dense_mask(torch.float64)[0, 0] == 0, allowed)


def test_pack_attention_leaves_what_it_does_not_model_to_the_model():
    from chainprune.scoring.packed import Pack, PackAttention, PackLayout

    layout = PackLayout.of(2, torch.tensor([1, 2]), [(0, 2)])

    def pack(**options):
        return Pack(torch.zeros(2, dtype=torch.long), torch.arange(2), [(torch.zeros(1, 1, 2, 2),) * 2], layout,
                    torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long), ScoringOptions(**options))

    attention = PackAttention([pack(dense_below=0)])  # every pack by structure unless it cannot be
    calls = []

    def original(module, query, key, value, mask, **kwargs):
        calls.append(mask)
        return "original", None

    q, k = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 2)
    assert attention(original, None, q, k, k, None, softcap=30.0, scaling=1.0)[0] == "original"
    assert attention(original, None, q, k, k, None, sliding_window=4, scaling=1.0)[0] == "original"
    assert attention(original, None, q, k, k, None, scaling=1.0)[0].shape == (1, 2, 1, 2)
    assert len(calls) == 2
    assert torch.equal(calls[0], layout.dense_mask(torch.float32))  # the layout's own mask, not the model's
    small = PackAttention([pack()])
    assert small(original, None, q, k, k, None, scaling=1.0)[0] == "original"  # small: one fused call
    switched_off = PackAttention([pack(dense_below=0, structured_attention=False)])
    assert switched_off(original, None, q, k, k, None, scaling=1.0)[0] == "original"


def test_packs_run_as_one_attend_as_each_alone():
    """Packs of different chains run as one forward (`--batch-chains`): each pack's tokens attend to its own
    keys exactly as when it runs alone, by structure and through the model's function with the dense mask."""
    from chainprune.scoring.packed import Pack, PackAttention, PackLayout

    gen = torch.Generator().manual_seed(1)
    heads, kv_heads, dim = 4, 2, 5
    shapes = [(9, torch.tensor([3, 3, 6, 8, 8]), [(0, 2), (2, 1), (0, 2)]), (4, torch.tensor([2, 4, 4]), [(1, 1), (3, 2)])]
    packs, before, tokens = [], [], []
    for past, sees, runs in shapes:
        before.append(past + sum(s for s, _ in runs))
        tokens.append(len(sees))
        keys = torch.zeros(1, kv_heads, before[-1], dim)
        packs.append(Pack(torch.zeros(len(sees), dtype=torch.long), sees, [(keys, keys)], PackLayout.of(past, sees, runs),
                          torch.ones(len(sees), dtype=torch.bool), torch.zeros(len(sees), dtype=torch.long),
                          ScoringOptions(dense_below=0)))
    query = torch.randn(1, heads, sum(tokens), dim, generator=gen, dtype=torch.float64)
    key = torch.randn(1, kv_heads, sum(before) + sum(tokens), dim, generator=gen, dtype=torch.float64)
    value = torch.randn(1, kv_heads, sum(before) + sum(tokens), dim, generator=gen, dtype=torch.float64)
    masks = []

    def original(module, q, k, v, mask, **kwargs):  # the model's own function: dense masked attention
        masks.append(mask)
        k, v = k.repeat_interleave(heads // kv_heads, dim=1), v.repeat_interleave(heads // kv_heads, dim=1)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3).transpose(1, 2), None

    together = PackAttention(packs)
    structured = together(original, None, query, key, value, None, scaling=0.3)[0]
    dense = together(original, None, query, key, value, None, scaling=0.3, sliding_window=99)[0]
    assert len(masks) == 2
    for r, pack in enumerate(packs):
        own_keys = torch.cat([torch.arange(sum(before[:r]), sum(before[: r + 1])),
                              sum(before) + torch.arange(sum(tokens[:r]), sum(tokens[: r + 1]))])
        rows = slice(sum(tokens[:r]), sum(tokens[: r + 1]))
        alone = pack.layout.attend(query[:, :, rows], key[:, :, own_keys], value[:, :, own_keys], 0.3)
        torch.testing.assert_close(structured[:, rows], alone, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(dense[:, rows], alone, rtol=1e-12, atol=1e-12)


def test_ties_between_candidates_scored_in_separate_calls_go_to_the_smallest_position(tiny_tokenizer):
    # With weights rounded to float32 (scored in float64), deleting either of two equal neighbouring tokens
    # (43 and 44 of this chain) ties exactly, yet the margin's widening scores them in separate calls, where
    # rounding differs in the last bits: the tie must still go to 43, as exact greedy's does.
    from chainprune.models import LoadedModel

    model = make_model(len(tiny_tokenizer), dtype=torch.float32).to(torch.float64)
    pruner = LoadedModel(model=model, tokenizer=tiny_tokenizer, name="rounded")
    exact = prune_chain(pruner, CHAINS[1], keep=[0.6], engine="packed")
    approx = prune_chain(pruner, CHAINS[1], keep=[0.6], engine="packed",
                         approximation=Approximation(screen=1, lookahead=2, margin=1e9))
    assert approx.deletion_order == exact.deletion_order


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("unit", ["token", "word", "sentence"])
@pytest.mark.parametrize("objective", ["joint", "answer"])
def test_an_engines_count_is_the_work_of_its_pass(tiny_pruner, engine, unit, objective):
    """`Engine.count`, from the lengths alone, is exactly the token-forwards one exact pass over every candidate
    computes (the chain's forward given), for every batch bound: what `prune --estimate` adds up."""
    from chainprune.scoring.chain_state import forward_current
    from chainprune.scoring.engine import PassShape
    from chainprune.units import unit_spans

    for chain in CHAINS[:4]:
        ids = tokenize_chain(tiny_pruner.tokenizer, chain)
        spans = unit_spans(ids.reasoning_texts, unit)
        for budget in (64, 8192):
            current = forward_current(tiny_pruner.model, ids, objective, ForwardStats())
            stats = ForwardStats()
            request = ScoreRequest(ids, objective, budget, spans=spans, stats=stats, cache=ChainCache(current=current))
            ENGINES[engine](tiny_pruner.model, request)
            shape = PassShape(len(ids.prompt_ids), len(ids.answer_ids), tuple(spans), objective, budget)
            assert ENGINES[engine].count(shape) == stats.token_forwards, (chain.id, budget)
