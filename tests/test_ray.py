"""`prune --ray` on a local Ray instance with CPU workers and a tiny saved model: the output equals the
single-process run byte for byte, also when a worker is SIGKILLed mid-run, when the driver is SIGKILLed and the run
resumed, and when a crash left a truncated final line; a chain that keeps killing workers is reported, not looped on.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from chainprune.cli import app
from chainprune.data.scores import scores_path
from chainprune.pipelines.distributed import ClusterReporter, RayOptions, plan_workers, rewrite_in_order, run_prune_distributed
from chainprune.pipelines.prune import PruneConfig, errors_path, run_prune
from conftest import gsm8k_records

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed: pip install 'chainprune[ray]'")


def short_chain(i: int, record: dict) -> dict:
    """A GSM8K chain cut short (the tiny model prunes it in a fraction of a second), lengths varying with i."""
    reasoning, final = record["answer"].split("####")
    reasoning = re.sub(r"<<[^>]*>>", "", reasoning).strip().split("\n")[0]
    return {"id": f"g{i}", "question": record["question"][:60], "reasoning": reasoning[: 12 + 5 * (i % 4)],
            "answer": f"The answer is {final.strip()}."}


CHAINS = [short_chain(i, r) for i, r in enumerate(gsm8k_records(10))]


def write_jsonl(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def ids_in(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def config(tiny_model_dir, **overrides) -> PruneConfig:
    return PruneConfig(model=str(tiny_model_dir), dtype="float64", device="cpu", keep=[0.8, 0.5], **overrides)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    """The single-process run of CHAINS plus one bad line: what every Ray run must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    source = write_jsonl(root / "in.jsonl", [*CHAINS[:3], "{broken", *CHAINS[3:]])
    out = root / "single.jsonl"
    summary = run_prune(source, out, config(tiny_model_dir, save_scores=True))
    assert summary.done == len(CHAINS) and [e.line for e in summary.failures] == [4]
    return source, out.read_bytes(), scores_path(out).read_bytes()


class Recorder(ClusterReporter):
    def __init__(self):
        self.pids, self.sent, self.done, self.deaths = [], [], [], []

    def worker_started(self, pid, node, device):
        self.pids.append(pid)

    def worker_died(self, pid, reason):
        self.deaths.append((pid, reason))

    def dispatched(self, chain, pid):
        self.sent.append((chain.id, pid))

    def finished(self, chain, trace, error):
        self.done.append(chain.id)


def test_identical_to_single_process_and_longest_first(tmp_path, cluster, tiny_model_dir, reference):
    source, expected, expected_scores = reference
    out = tmp_path / "ray.jsonl"
    recorder = Recorder()
    summary = run_prune_distributed(source, out, config(tiny_model_dir, save_scores=True), RayOptions(workers=2),
                                    reporter=recorder)
    assert out.read_bytes() == expected  # completion order was rewritten into input order
    assert scores_path(out).read_bytes() == expected_scores  # --save-scores records come back from the workers
    assert summary.done == len(CHAINS) and summary.workers == 2 and summary.retries == 0
    assert [(e.line, e.id) for e in summary.failures] == [(4, None)] and "not valid JSON" in summary.failures[0].message
    assert len(errors_path(out).read_text().splitlines()) == 1
    by_length = sorted(CHAINS, key=lambda c: -len(c["reasoning"]))
    assert [cid for cid, _ in recorder.sent[:2]] == [c["id"] for c in by_length[:2]]
    # Every worker that was sent chains was reported started. (Whether the second worker is up before the first
    # has finished every chain depends on the machine's load, so both are not required to have worked.)
    assert {pid for _, pid in recorder.sent} <= set(recorder.pids) and 1 <= len(set(recorder.pids)) <= 2
    assert sorted(recorder.done) == sorted(c["id"] for c in CHAINS)
    assert json.loads((tmp_path / "ray.jsonl.config.json").read_text())["model"] == str(tiny_model_dir)


def test_worker_sigkilled_mid_run_is_replaced_and_its_chain_retried(tmp_path, cluster, tiny_model_dir, reference):
    source, expected, _ = reference
    out = tmp_path / "ray.jsonl"

    class KillOnFirstResult(Recorder):
        def finished(self, chain, trace, error):
            super().finished(chain, trace, error)
            if len(self.done) == 1:  # both workers still hold queued chains: the victim is mid-example
                self.victim = self.sent[-1][1]
                os.kill(self.victim, signal.SIGKILL)

    recorder = KillOnFirstResult()
    summary = run_prune_distributed(source, out, config(tiny_model_dir), RayOptions(workers=2), reporter=recorder)
    assert out.read_bytes() == expected
    assert summary.worker_deaths == 1 and summary.retries == 1 and summary.done == len(CHAINS)
    assert [pid for pid, _ in recorder.deaths] == [recorder.victim]
    # The running chain was retried; one queued behind it (if any) was resubmitted without counting an attempt.
    assert len(recorder.sent) - len(CHAINS) in (1, 2)
    assert sorted(recorder.done) == sorted(c["id"] for c in CHAINS)  # each chain finished exactly once


def test_chain_that_keeps_killing_workers_fails_after_bounded_retries(tmp_path, cluster, tiny_model_dir):
    source = write_jsonl(tmp_path / "in.jsonl", CHAINS[:4])
    out = tmp_path / "ray.jsonl"
    poison = CHAINS[1]["id"]

    class KillWhenPoisonRuns(Recorder):
        def dispatched(self, chain, pid):
            super().dispatched(chain, pid)
            if chain.id == poison:
                os.kill(pid, signal.SIGKILL)

    recorder = KillWhenPoisonRuns()
    summary = run_prune_distributed(source, out, config(tiny_model_dir), RayOptions(workers=2, max_retries=1, queue=1),
                                    reporter=recorder)
    assert ids_in(out) == [c["id"] for c in CHAINS[:4] if c["id"] != poison]
    assert [(e.line, e.id) for e in summary.failures] == [(2, poison)]
    assert "worker died 2 times" in summary.failures[0].message
    assert summary.worker_deaths == 2 and summary.retries == 1
    assert [cid for cid, _ in recorder.sent].count(poison) == 2


def test_driver_killed_mid_run_then_resumed_after_a_torn_write(tmp_path, cluster, tiny_model_dir, reference):
    source, expected, _ = reference
    out = tmp_path / "ray.jsonl"
    args = [sys.executable, "-m", "chainprune.cli", "prune", str(source), "--out", str(out), "--model", str(tiny_model_dir),
            "--dtype", "float64", "--device", "cpu", "--keep", "0.8", "--keep", "0.5",
            "--ray", "--ray-address", cluster, "--workers", "2"]
    driver = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240  # a loaded machine takes over 90 s to start two workers and prune 2 chains
    while time.monotonic() < deadline and driver.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and anything it started in its process group
    driver.wait()
    written = out.read_bytes().splitlines(keepends=True)
    assert 2 <= len(written) < len(CHAINS), "the driver should have been killed mid-run"
    # A kill in the middle of a write leaves half a record: emulate one after the complete lines.
    out.write_bytes(b"".join(written) + expected.splitlines(keepends=True)[-1][:50])
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 1, resumed.stderr  # exit 1: the broken input line is reported again
    assert "partial last line" in resumed.stderr and "line 4" in resumed.stderr
    assert out.read_bytes() == expected  # complete, nothing duplicated, input order


def test_worker_that_cannot_load_the_model_stops_the_run_with_its_error(tmp_path, cluster, reference):
    source, _, _ = reference
    out = tmp_path / "ray.jsonl"
    broken = PruneConfig(model=str(tmp_path / "no-such-model"), dtype="float64", device="cpu")
    with pytest.raises(RuntimeError, match=r"could not start \(1 attempt\): the worker could not load the pruner: .*no-such-model"):
        run_prune_distributed(source, out, broken, RayOptions(workers=1, max_retries=0))
    assert not out.exists() or out.read_text() == ""  # nothing half-done; a later run starts from scratch


def test_resume_of_a_complete_output_starts_no_workers_and_keeps_it(tmp_path, cluster, tiny_model_dir, reference):
    source, expected, _ = reference
    out = tmp_path / "ray.jsonl"
    lines = expected.splitlines(keepends=True)
    out.write_bytes(b"".join(reversed(lines)))  # as a killed run might leave it: completion order
    recorder = Recorder()
    summary = run_prune_distributed(source, out, config(tiny_model_dir), resume=True, reporter=recorder)
    assert summary.skipped == len(CHAINS) and summary.done == 0 and recorder.pids == []
    assert out.read_bytes() == expected


def test_rewrite_in_order_moves_raw_records_and_drops_broken_ones(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "b", "x": 1}\n{"id": \n{"id": "a", "x": 2}\n{"id": "b", "x": 3}\n{"id": "z"}\n')
    warnings = rewrite_in_order(path, ["a", "b"])
    assert path.read_text() == '{"id": "a", "x": 2}\n{"id": "b", "x": 1}\n{"id": "z"}\n'
    assert any("line 2" in w for w in warnings) and any("'b' appears twice" in w for w in warnings)
    path.write_text('{"id": "b", "x": 1}\n{"id": "b", "x": 3}\n')
    rewrite_in_order(path, ["b"], keep="last")
    assert path.read_text() == '{"id": "b", "x": 3}\n'
    before = path.stat().st_mtime_ns
    assert rewrite_in_order(path, ["b"]) == [] and path.stat().st_mtime_ns == before  # in order: left alone


@pytest.mark.parametrize(
    "device, workers, resources, expected",
    [
        ("auto", None, {"CPU": 8}, (8, {"num_cpus": 1}, 1)),
        ("auto", 2, {"CPU": 8}, (2, {"num_cpus": 1}, 4)),
        ("auto", None, {"CPU": 16, "GPU": 4}, (4, {"num_gpus": 1, "num_cpus": 1}, 4)),
        ("cpu", 3, {"CPU": 16, "GPU": 4}, (3, {"num_cpus": 1}, 5)),
    ],
)
def test_plan_workers(device, workers, resources, expected):
    count, options, threads = plan_workers(PruneConfig(device=device), RayOptions(workers=workers), resources)
    assert (count, {k: v for k, v in options.items() if k.startswith("num_")}, threads) == expected
    assert options["max_restarts"] == 0  # the driver replaces dead workers itself, counting retries per chain


@pytest.mark.parametrize(
    "device, workers, resources, message",
    [("cuda", None, {"CPU": 8}, "no GPUs"), ("auto", 5, {"CPU": 8, "GPU": 4}, "4 GPU"), ("cpu", 9, {"CPU": 8}, "8 CPU")],
)
def test_plan_workers_refuses_what_the_cluster_cannot_hold(device, workers, resources, message):
    with pytest.raises(ValueError, match=message):
        plan_workers(PruneConfig(device=device), RayOptions(workers=workers), resources)


def test_cli_ray_options_need_ray_and_missing_ray_is_explained(tmp_path, monkeypatch, reference):
    source, _, _ = reference
    result = CliRunner().invoke(app, ["prune", str(source), "--workers", "2", "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "need --ray" in result.output
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as without the extra
    result = CliRunner().invoke(app, ["prune", str(source), "--ray", "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "chainprune[ray]" in " ".join(result.output.split())


def test_cluster_progress_reports_deaths_retries_failures_and_summary(capsys):
    from chainprune.data.jsonl import RecordError
    from chainprune.pipelines.distributed import DistributedSummary
    from chainprune.report.cluster_progress import ClusterProgress, distributed_summary_table
    from chainprune.report.progress import console
    from chainprune.types import Chain

    chain = Chain("c[1]", "q", "r", "a")
    progress = ClusterProgress()
    progress.start(2, 2)
    progress.worker_started(11, "10.0.0.1", "cpu")
    progress.worker_started(12, "10.0.0.2", "cpu")
    progress.worker_died(12, "ActorDiedError: killed")
    progress.retried(chain, 1, "ActorDiedError: killed")
    progress.finished(chain, None, RecordError(3, "c[1]", "its worker died 3 times"))
    assert progress.progress.tasks[0].fields["cluster"] == "workers 1/2 alive, 1 retried"
    progress.stop()
    summary = DistributedSummary(done=1, workers=2, retries=1, worker_deaths=1, seconds=2.0)
    console.print(distributed_summary_table(summary))
    err = " ".join(capsys.readouterr().err.split())
    assert "worker 12 died (ActorDiedError: killed)" in err and "retrying 'c[1]' on another worker (attempt 2)" in err
    assert "line 3, id 'c[1]': its worker died 3 times" in err  # markup-like text printed as it is
    assert "retried after a worker died │ 1" in err and "workers │ 2 (cpu)" in err
