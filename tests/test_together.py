"""Chains pruned at once (`--batch-chains`): their packed forwards run as one and give what each run alone gives."""

import json
import threading

import pytest

import chainprune.pipelines.prune as prune_pipeline
from chainprune.pipelines.prune import PruneConfig, run_prune
from chainprune.scoring.together import run_together

CHAINS = [
    {"id": "a", "question": "How many clips?", "reasoning": "Natalia sold 48/2 = 24 clips in May.", "answer": "The answer is 72."},
    {"id": "b", "question": "Pay?", "reasoning": "12/60 = 0.2 per minute; 0.2*50 = 10.", "answer": "The answer is 10."},
    {"id": "c", "question": "Books?", "reasoning": "She reads 12 pages, then twice that.", "answer": "The answer is 36."},
    {"id": "d", "question": "Eggs?", "reasoning": "16 - 3 - 4 = 9 eggs; 9 * 2 = 18.", "answer": "The answer is 18."},
    {"id": "long", "question": "q", "reasoning": " ".join(["Natalia sold 48 clips."] * 200), "answer": "The answer is 1."},
]


def flat(text):
    return " ".join(text.replace("│", " ").split())


def traces(path):
    return {record["id"]: record for record in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("mode", [{}, {"screen": 2, "lookahead": 2, "margin": 1.0}], ids=["exact", "margin"])
def test_chains_pruned_together_equal_chains_pruned_alone(tmp_path, tiny_pruner, monkeypatch, mode):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(c) + "\n" for c in CHAINS))
    alone, together = tmp_path / "alone.jsonl", tmp_path / "together.jsonl"
    config = dict(keep=[0.5], engine="packed", **mode)
    run_prune(source, alone, PruneConfig(**config), loader=lambda _: tiny_pruner)

    sizes = []
    run_packs = prune_pipeline.run_packs

    def counted(model, packs):
        sizes.append(len(packs))
        return run_packs(model, packs)

    monkeypatch.setattr(prune_pipeline, "run_packs", counted)
    summary = run_prune(source, together, PruneConfig(batch_chains=3, **config), loader=lambda _: tiny_pruner)

    assert max(sizes) == 3  # forwards of three chains did run as one
    assert [(e.line, e.id) for e in summary.failures] == [(5, "long")]  # reported; the others complete
    expected, got = traces(alone), traces(together)
    assert sorted(got) == sorted(expected) == ["a", "b", "c", "d"]
    for key, trace in expected.items():
        assert got[key]["deletion_order"] == trace["deletion_order"], key
        assert got[key]["objective_values"] == pytest.approx(trace["objective_values"], abs=1e-9)
        assert got[key]["token_forwards"] == trace["token_forwards"]
        assert got[key].get("mode") == trace.get("mode")


def test_run_together_serves_what_waits_at_once_and_reports_errors():
    served, threads_seen = [], set()

    def run(items):
        assert threading.current_thread() is threading.main_thread()  # forwards run on the serving thread
        served.append(sorted(items))
        if "bad" in items:
            raise RuntimeError("out of memory")
        return [item * 2 for item in items]

    results = {}

    def work(task):
        from chainprune.scoring import together

        threads_seen.add(threading.get_ident())
        results[task] = [together.current().submit(f"{task}{k}") for k in range(3)]

    run_together(["x", "y", "z"], work, 3, run)
    assert len(threads_seen) == 3
    assert served[:3] == [["x0", "y0", "z0"], ["x1", "y1", "z1"], ["x2", "y2", "z2"]]
    assert results["y"] == ["y0y0", "y1y1", "y2y2"]

    failed = []

    def work_failing(task):
        from chainprune.scoring import together

        try:
            together.current().submit("bad" if task == "b" else task)
        except RuntimeError as error:
            failed.append((task, str(error)))

    run_together(["a", "b"], work_failing, 2, run)
    assert sorted(failed) == [("a", "out of memory"), ("b", "out of memory")]  # one forward: both told

    with pytest.raises(ValueError, match="boom"):
        run_together(["a", "b", "c"], lambda task: (_ for _ in ()).throw(ValueError("boom")) if task == "b" else None, 2, run)


def test_batch_chains_needs_the_packed_engine(tmp_path):
    with pytest.raises(ValueError, match="needs --engine packed"):
        PruneConfig(batch_chains=2, engine="prefix").validate()


def test_cli_batch_chains_usage_errors(tmp_path):
    from typer.testing import CliRunner

    from chainprune.cli import app

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(CHAINS[0]) + "\n")
    result = CliRunner().invoke(app, ["prune", str(source), "--out", str(tmp_path / "t.jsonl"), "--engine", "prefix",
                                      "--batch-chains", "2"])
    assert result.exit_code == 2 and "needs --engine packed" in flat(result.output)
    result = CliRunner().invoke(app, ["prune", str(source), "--out", str(tmp_path / "t.jsonl"), "--engine", "packed",
                                      "--batch-chains", "2", "--ray"])
    assert result.exit_code == 2 and "--batch-chains" in result.output and "--ray each worker" in flat(result.output)


def test_step_bar_sums_the_chains_in_progress():
    from chainprune.pipelines.prune import Reporter, StepsTogether

    class Recorded(Reporter):
        def __init__(self):
            self.steps = []

        def step(self, done, total):
            self.steps.append((done, total))

    inner = Recorded()
    steps = StepsTogether(inner)
    barrier = threading.Barrier(2)

    def chain(total):
        steps.example(None, total)
        barrier.wait()
        steps.step(1, total)
        barrier.wait()
        steps.finished(None, None, None)

    workers = [threading.Thread(target=chain, args=(n,)) for n in (4, 6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(inner.steps)[-1] == (2, 10)  # both chains' deletions, done and to do
