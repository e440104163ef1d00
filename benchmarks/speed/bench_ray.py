"""Load test of `prune --ray`: many short GSM8K chains through Ray CPU workers with a tiny model, memory sampled.

Builds a tiny seeded Llama model (the tests' one, saved to --work-dir; or takes --model), writes N short chains
cut from GSM8K train (first line of the reasoning, 20-60 characters), and prunes them with `run_prune_distributed` on a local
Ray instance. A sampler thread reads the resident memory (RSS) of the driver and of every worker process twice a
second; the peaks, and the RSS at each tenth of the run, show whether memory grows with the number of chains done.
The output is checked (every id exactly once, in input order) and, for the first --check chains, compared record
for record with a single-process `run_prune` of the same chains. Prints a table, writes JSON.

    .venv/bin/python -m benchmarks.speed.bench_ray --chains 1000 --workers 2 --out runs/bench/ray-load-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

from benchmarks.common import (
    ROOT,
    RUNS,
    command,
    gsm8k_records,
    solution_chain,
    write_result,
)
from chainprune.pipelines.distributed import RayOptions, run_prune_distributed
from chainprune.pipelines.prune import PruneConfig, run_prune
from chainprune.run import ClusterReporter

MB = 1024 * 1024


def write_chains(path: Path, n: int, gsm8k: Path | None = None) -> None:
    lines = []
    for i, record in zip(range(n), gsm8k_records(gsm8k)):
        chain = solution_chain(record, i)
        first = chain["reasoning"].split("\n")[0]
        lines.append(json.dumps({**chain, "question": chain["question"][:100], "reasoning": first[: 20 + 10 * (i % 5)]}))
    if len(lines) < n:
        raise SystemExit(f"the GSM8K file has only {len(lines)} records")
    path.write_text("\n".join(lines) + "\n")


def tiny_model(folder: Path) -> Path:
    """The tests' tiny seeded Llama model and BPE tokenizer (tests/conftest.py, built offline), saved to `folder`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_model, make_tokenizer

    tokenizer = make_tokenizer()
    make_model(len(tokenizer), dtype=torch.float32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class MemoryWatch(ClusterReporter):
    """Samples RSS of the driver and the workers; snapshots at every tenth of the run; tracks chains in flight."""

    def __init__(self, interval: float):
        self.driver = psutil.Process()
        self.workers: dict[int, psutil.Process] = {}
        self.peak = {"driver": 0, "worker": 0}
        self.snapshots: list[dict] = []
        self.total = self.done = self.in_flight = self.max_in_flight = 0
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self, total: int, workers: int) -> None:
        self.total, self.started = total, time.perf_counter()
        self.thread.start()

    def worker_started(self, pid: int, node: str, device: str) -> None:
        self.workers[pid] = psutil.Process(pid)

    def worker_died(self, pid, reason) -> None:
        self.workers.pop(pid, None)

    def dispatched(self, chain, pid) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def finished(self, chain, trace, error) -> None:
        self.in_flight -= 1
        self.done += 1
        if self.done % max(1, self.total // 10) == 0 or self.done == self.total:
            driver, workers = self._sample()
            self.snapshots.append({"done": self.done, "seconds": round(time.perf_counter() - self.started, 1),
                                   "driver_rss_mb": round(driver / MB, 1),
                                   "worker_rss_mb": [round(w / MB, 1) for w in workers]})

    def _sample(self) -> tuple[int, list[int]]:
        driver = self.driver.memory_info().rss
        workers = []
        for process in list(self.workers.values()):
            try:
                workers.append(process.memory_info().rss)
            except psutil.Error:
                pass
        self.peak["driver"] = max(self.peak["driver"], driver)
        self.peak["worker"] = max([self.peak["worker"], *workers])
        return driver, workers

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            self._sample()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="the pruner (default: the tests' tiny model, built in --work-dir)")
    parser.add_argument("--gsm8k", type=Path, default=None, help="GSM8K train file (default: benchmarks.common's)")
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--check", type=int, default=50, help="chains also pruned by a single process and compared")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/chainprune-bench-ray"))
    parser.add_argument("--out", type=Path, default=RUNS / "ray-load-cpu.json")
    args = parser.parse_args(argv)

    import ray

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or str(tiny_model(work / "tiny-model"))
    chains = work / "chains.jsonl"
    write_chains(chains, args.chains, args.gsm8k)
    config = PruneConfig(model=model, dtype="float32", device="cpu", keep=[0.9, 0.7, 0.5])

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    watch = MemoryWatch(args.interval)
    driver_before = watch.driver.memory_info().rss
    out = work / "traces-ray.jsonl"
    started = time.perf_counter()
    summary = run_prune_distributed(chains, out, config, RayOptions(workers=args.workers), overwrite=True,
                                    reporter=watch)
    wall = time.perf_counter() - started
    watch.stopped.set()
    ray.shutdown()

    records = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["id"] for r in records]
    reasoning_tokens = [len(r["reasoning_ids"]) for r in records]
    del records
    expected_ids = [json.loads(line)["id"] for line in chains.read_text().splitlines()]
    assert ids == expected_ids, "the output should hold every id exactly once, in input order"
    check_in = work / "check.jsonl"
    check_in.write_text("".join(chains.read_text().splitlines(keepends=True)[: args.check]))
    check_out = work / "traces-single.jsonl"
    run_prune(check_in, check_out, config, overwrite=True)
    single = check_out.read_text().splitlines()
    identical = single == out.read_text().splitlines()[: args.check]

    result = {
        "benchmark": "ray_load", "model": args.model or "the tests' tiny model",
        "ram_gb": round(psutil.virtual_memory().total / 2**30), "ray": ray.__version__,
        "chains": args.chains, "workers": args.workers, "keep": config.keep, "dtype": config.dtype,
        "done": summary.done, "failed": len(summary.failures), "retries": summary.retries,
        "reasoning_tokens_mean": round(sum(reasoning_tokens) / max(1, len(reasoning_tokens)), 1),
        "reasoning_tokens_max": max(reasoning_tokens, default=0),
        "wall_seconds": round(wall, 1), "examples_per_hour": round(summary.done / wall * 3600),
        "token_forwards": summary.token_forwards,
        "driver_rss_before_mb": round(driver_before / MB, 1),
        "driver_rss_peak_mb": round(watch.peak["driver"] / MB, 1),
        "worker_rss_peak_mb": round(watch.peak["worker"] / MB, 1),
        "max_chains_in_flight": watch.max_in_flight,
        "snapshots": watch.snapshots,
        f"first_{args.check}_identical_to_single_process": identical,
    }
    write_result(args.out, result, command=command(__file__, argv))

    print(f"{summary.done} chains pruned by {args.workers} Ray CPU workers in {wall:.1f} s "
          f"({result['examples_per_hour']:,} examples/hour), {len(summary.failures)} failed, "
          f"at most {watch.max_in_flight} chains in flight")
    print(f"first {args.check} traces identical to a single-process run: {identical}")
    print(f"{'done':>6} {'seconds':>8} {'driver RSS MB':>14} {'worker RSS MB':>20}")
    for s in watch.snapshots:
        print(f"{s['done']:>6} {s['seconds']:>8} {s['driver_rss_mb']:>14} {', '.join(map(str, s['worker_rss_mb'])):>20}")
    print(f"peaks: driver {result['driver_rss_peak_mb']} MB (before the run {result['driver_rss_before_mb']} MB), "
          f"worker {result['worker_rss_peak_mb']} MB")
    return result


if __name__ == "__main__":
    main()
