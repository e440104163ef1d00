"""Attention surrogate: Pearson on known answers, features against a naive loop, training on a synthetic
target, and the end-to-end pipeline on a tiny model."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from chainprune.analysis.surrogate import Surrogate, attention_features, evaluate, pearson, pearson_loss, train_surrogate
from chainprune.pipelines.analyze import run_surrogate


def test_pearson_known_answers():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(pearson(x, 3 * x + 1)) == pytest.approx(1.0)
    assert float(pearson(x, -x)) == pytest.approx(-1.0)
    assert float(pearson(x, torch.tensor([1.0, -1.0, -1.0, 1.0]))) == pytest.approx(0.0)
    assert float(pearson(x, torch.ones(4))) == 0.0
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    assert float(pearson(a, b)) == pytest.approx(pearsonr(a.numpy(), b.numpy())[0], abs=1e-12)
    assert float(pearson_loss([x, x], [x, -x])) == pytest.approx(1.0)  # mean r = 0


def test_attention_features_match_naive_loop(tiny_pruner):
    model = tiny_pruner.model
    ids = list(range(5, 17))
    features = attention_features(model, ids, start=3, count=6)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = model(torch.tensor([ids]), output_attentions=True).attentions
    model.set_attn_implementation("sdpa")
    heads = attentions[0].shape[1]
    for row, p in enumerate(range(3, 9)):
        for layer, a in enumerate(attentions):
            for h in range(heads):
                expected = np.mean([float(a[0, h, q, p]) for q in range(p + 1, len(ids))])
                assert float(features[row, layer * heads + h]) == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert features.shape == (6, len(attentions) * heads)


def synthetic(chains, seed):
    g = torch.Generator().manual_seed(seed)
    features, targets = [], []
    for _ in range(chains):
        f = torch.rand(30, 8, generator=g) * 0.5 + 1e-3
        # a nonlinear function of two features, with a chain-specific scale and offset
        t = torch.log(f[:, 0]) - 2 * torch.log(f[:, 3]) ** 2 / 10
        features.append(f)
        targets.append(t * (1 + torch.rand(1, generator=g)) - 50 * torch.rand(1, generator=g))
    return features, targets


def test_training_learns_a_synthetic_target(tmp_path):
    features, targets = synthetic(20, 0)
    surrogate = train_surrogate(features, targets, hidden=16, epochs=200)
    test_f, test_t = synthetic(10, 1)
    assert np.mean(evaluate(surrogate, test_f, test_t)) > 0.95
    # shuffled targets carry nothing to learn: held-out correlation near zero
    g = torch.Generator().manual_seed(2)
    noise = train_surrogate(features, [t[torch.randperm(len(t), generator=g)] for t in targets], hidden=16, epochs=200)
    assert abs(np.mean(evaluate(noise, test_f, test_t))) < 0.3
    surrogate.save(tmp_path / "s.pt")
    loaded = Surrogate.load(tmp_path / "s.pt")
    torch.testing.assert_close(loaded.predict(test_f[0]), surrogate.predict(test_f[0]))
    assert loaded.info["features"] == 8


SENTENCES = [
    "Natalia sold 48/2 = 24 clips in May.",
    "Weng earns 12/60 = $0.2 per minute.",
    "Betty has only 100 / 2 = $50.",
    "So the total is 10 apples and 3 pears.",
    "Her grandparents gave her 15 * 2 = $30.",
    "Natalia sold 48+24 = 72 clips altogether.",
]


def test_pipeline_on_tiny_model(tmp_path, tiny_pruner):
    chains = [{"id": f"c{k}", "question": "How many?", "reasoning": s, "answer": "The answer is 3."}
              for k, s in enumerate(SENTENCES)]
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(c) + "\n" for c in chains[:4]) + '{"id": "bad"}\n')
    test.write_text("".join(json.dumps(c) + "\n" for c in chains[4:]))
    model = tiny_pruner.model
    result = run_surrogate(train, test, tmp_path / "sur.pt", model, tiny_pruner, hidden=8, epochs=50)
    assert (result.train_chains, result.test_chains) == (4, 2)
    assert [f.id for f in result.failures] == ["bad"]
    assert all(p.exists() for p in result.files)
    saved = Surrogate.load(tmp_path / "sur.pt")
    # the reported held-out Pearson is the saved surrogate's on features and exact targets recomputed here
    from chainprune.chains import tokenize_chain
    from chainprune.pruning import ChainScorer
    from chainprune.types import Chain

    for chain, row in zip(chains[4:], [r for r in result.per_chain if r["split"] == "test"]):
        ids = tokenize_chain(tiny_pruner.tokenizer, Chain(**chain))
        n = len(ids.reasoning_ids)
        target = ChainScorer(model, ids, "joint", "naive", 8192).candidates(list(range(n)))[1]
        prediction = saved.predict(attention_features(model, ids.input_ids, len(ids.prompt_ids), n))
        assert row["pearson"] == pytest.approx(float(pearson(prediction.double(), target)), abs=1e-5)
    assert saved.info["features"] == 2 * 4 and saved.info["train_chains"] == 4
    with pytest.raises(ValueError, match="both the train and the test"):
        run_surrogate(train, train, tmp_path / "x.pt", model, tiny_pruner, hidden=8, epochs=5)


class RecordingScorer:
    """Scores = fixed per-position values (deleting position p gives values[p]); records each subset asked."""

    def __init__(self, values):
        self.values, self.subsets = values, []

    def candidates(self, remaining, subset=None):
        self.subsets.append(None if subset is None else [remaining[k] for k in subset])
        scores = [self.values[p] if subset is None or k in subset else float("nan") for k, p in enumerate(remaining)]
        return 0.0, scores

    def objective(self, remaining):
        return 0.0


def test_screener_picks_the_rescored_candidates():
    from chainprune.pruning.greedy import Approximation, greedy_prune

    values = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    scorer = RecordingScorer(values)
    # the screener prefers position 0 (a surrogate's guess), stale scores would prefer 6
    screener = lambda remaining: [10.0 if p == 0 else -p for p in remaining]  # noqa: E731
    result = greedy_prune(8, scorer, 2, approximation=Approximation(screen=1, refresh=100), screener=screener)
    assert scorer.subsets[0] is None  # first pass is full: deletes 7
    assert scorer.subsets[1] == [0, 6]  # screener's best (0) plus the deleted token's neighbour (6)
    assert result.deletion_order == [7, 6]
    stale = RecordingScorer(values)
    greedy_prune(8, stale, 2, approximation=Approximation(screen=1, refresh=100))
    assert stale.subsets[1] == [6]


def test_prune_with_surrogate_screening(tmp_path, tiny_pruner):
    from chainprune.pipelines.prune import PruneConfig, run_prune

    surrogate = train_surrogate([torch.rand(5, 8) for _ in range(3)], [torch.rand(5) for _ in range(3)], hidden=4, epochs=2)
    surrogate.save(tmp_path / "s.pt")  # 8 features = 2 layers x 4 heads of the tiny model
    src = tmp_path / "chains.jsonl"
    src.write_text(json.dumps({"id": "a", "question": "Q?", "reasoning": SENTENCES[0], "answer": "The answer is 3."}) + "\n")
    exact, screened = tmp_path / "exact.jsonl", tmp_path / "screened.jsonl"
    run_prune(src, exact, PruneConfig(keep=[0.5], dtype="float64"), loader=lambda c: tiny_pruner)
    # screening with M >= n re-scores everything: the exact order, but the trace says what was used
    config = PruneConfig(keep=[0.5], dtype="float64", screen=100, refresh=50, surrogate=str(tmp_path / "s.pt"))
    run_prune(src, screened, config, loader=lambda c: tiny_pruner)
    e, s = json.loads(exact.read_text()), json.loads(screened.read_text())
    assert s["deletion_order"] == e["deletion_order"]
    assert s["mode"] == {"screen": 100, "refresh": 50, "surrogate": "s.pt"}
    with pytest.raises(ValueError, match="--screen"):
        PruneConfig(surrogate=str(tmp_path / "s.pt")).validate()
    wrong = train_surrogate([torch.rand(5, 3)], [torch.rand(5)], hidden=2, epochs=1)
    wrong.save(tmp_path / "w.pt")
    bad = PruneConfig(keep=[0.5], screen=2, surrogate=str(tmp_path / "w.pt"))
    with pytest.raises(ValueError, match="expects 3 attention features"):
        run_prune(src, tmp_path / "bad.jsonl", bad, loader=lambda c: tiny_pruner)


def test_attention_split_given_features_match_naive_loop(tiny_pruner):
    model = tiny_pruner.model
    ids = list(range(5, 17))
    from chainprune.analysis.surrogate import EPS

    features = attention_features(model, ids, start=3, count=6, kind="attention-split+given") - EPS  # offset as measured
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = model(torch.tensor([ids]), output_attentions=True).attentions
    model.set_attn_implementation("sdpa")
    heads = attentions[0].shape[1]
    width = len(attentions) * heads
    assert features.shape == (6, 5 * width)
    for row, p in enumerate(range(3, 9)):
        for layer, a in enumerate(attentions):
            for h in range(heads):
                bands = [[p + 1], range(p + 2, min(p + 9, len(ids))), range(p + 9, len(ids))]
                for b, queries in enumerate(bands):
                    expected = np.mean([float(a[0, h, q, p]) for q in queries]) if len(queries) else 0.0
                    assert float(features[row, layer * 3 * heads + b * heads + h]) == pytest.approx(expected, rel=1e-5, abs=1e-9)
                weights = a[0, h, p, : p + 1].double()
                entropy = float(-(weights * torch.log(weights)).sum())
                base = 3 * width + layer * 2 * heads
                assert float(features[row, base + h]) == pytest.approx(float(a[0, h, p, p - 1]), rel=1e-5, abs=1e-9)
                assert float(features[row, base + heads + h]) == pytest.approx(entropy, rel=1e-5, abs=1e-9)
    with pytest.raises(ValueError, match="known: attention, attention"):
        attention_features(model, ids, start=3, count=6, kind="hidden")


def test_feature_kind_is_saved_and_used(tmp_path, tiny_pruner):
    from chainprune.chains import tokenize_chain
    from chainprune.pipelines.prune import PruneConfig, run_prune
    from chainprune.ranking import SurrogateModel, get_ranker
    from chainprune.types import Chain

    chains = [{"id": f"c{k}", "question": "How many?", "reasoning": s, "answer": "The answer is 3."}
              for k, s in enumerate(SENTENCES)]
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(c) + "\n" for c in chains[:4]))
    test.write_text("".join(json.dumps(c) + "\n" for c in chains[4:]))
    model = tiny_pruner.model
    run_surrogate(train, test, tmp_path / "given.pt", model, tiny_pruner, hidden=8, epochs=20,
                  feature_kind="attention-split+given")
    given = Surrogate.load(tmp_path / "given.pt")
    assert given.feature_kind == "attention-split+given" and given.info["features"] == 5 * 2 * 4
    ids = tokenize_chain(tiny_pruner.tokenizer, Chain(**chains[0]))
    start, n = len(ids.prompt_ids), len(ids.reasoning_ids)
    predicted = given.predict(attention_features(model, ids.input_ids, start, n, "attention-split+given")).tolist()
    ranking = get_ranker("surrogate")(ids, SurrogateModel(model=model, surrogate=given, name="given.pt"))
    assert ranking.scores == pytest.approx([-p for p in predicted])
    # a surrogate saved before feature kinds existed has none in its info: it is an attention surrogate
    old = train_surrogate([torch.rand(5, 8) for _ in range(3)], [torch.rand(5) for _ in range(3)], hidden=4, epochs=2)
    assert "feature_kind" not in old.info
    old.save(tmp_path / "old.pt")
    old = Surrogate.load(tmp_path / "old.pt")
    assert old.feature_kind == "attention"
    ranking = get_ranker("surrogate")(ids, SurrogateModel(model=model, surrogate=old, name="old.pt"))
    assert ranking.scores == pytest.approx([-p for p in old.predict(attention_features(model, ids.input_ids, start, n)).tolist()])
    # prune --surrogate screens with the kind the file records (M >= n: the exact order either way)
    src = tmp_path / "chains.jsonl"
    src.write_text(json.dumps(chains[0]) + "\n")
    exact, screened = tmp_path / "exact.jsonl", tmp_path / "screened.jsonl"
    run_prune(src, exact, PruneConfig(keep=[0.5], dtype="float64"), loader=lambda c: tiny_pruner)
    config = PruneConfig(keep=[0.5], dtype="float64", screen=100, refresh=50, surrogate=str(tmp_path / "given.pt"))
    run_prune(src, screened, config, loader=lambda c: tiny_pruner)
    assert json.loads(screened.read_text())["deletion_order"] == json.loads(exact.read_text())["deletion_order"]
    with pytest.raises(ValueError, match="unknown surrogate feature kind"):
        run_surrogate(train, test, tmp_path / "x.pt", model, tiny_pruner, hidden=8, epochs=5, feature_kind="hidden")
