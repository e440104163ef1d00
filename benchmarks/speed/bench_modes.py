"""Whole prunes of real GSM8K chains with every engine and approximate mode, and their fidelity to exact greedy.

Each mode prunes the same chains to keep 0.9/0.7/0.5 through `chainprune prune`'s pipeline (traces written
under --work-dir); approximate traces are compared with the exact traces of --reference (an exact engine)
by `chainprune compare`'s code. Prints a table and writes JSON: wall time, token-forwards, peak resident memory,
speed-up vs naive (run, or estimated with --naive-rate), and kept-set overlap / Kendall tau / objective gap at
keep 0.5.

    .venv/bin/python -m benchmarks.speed.bench_modes --examples 8 --max-reasoning 60 --out runs/bench/modes-cpu.json
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import psutil

from benchmarks.common import (
    RUNS,
    command,
    write_result,
    write_shuffled_chains,
)
from chainprune.models import load_model
from chainprune.pipelines.compare import compare_traces
from chainprune.pipelines.prune import PruneConfig, run_prune
from chainprune.pruning import ChainScorer
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS
from chainprune.types import ChainIds

# The modes run by default. A mode is named by its settings: an engine, then KEY=VALUE pairs of
# prune's options (per_step, screen, refresh, lookahead, margin; batch = --batch-chains); any such name may
# be given to --modes.
MODES = [
    "naive", "prefix", "packed", "per_step=2", "per_step=4", "screen=8,refresh=10", "screen=8,refresh=10,per_step=2",
    "screen=4,lookahead=8", "screen=8,lookahead=8", "packed,screen=8,lookahead=4", "packed,screen=2,lookahead=3,margin=5",
]
SETTINGS = {"per_step": int, "screen": int, "refresh": int, "lookahead": int, "margin": float, "batch": int}


def mode_settings(name: str) -> dict:
    """PruneConfig fields of a mode name such as `packed,screen=2,lookahead=3,margin=5,batch=8`."""
    parts = name.split(",")
    settings: dict = {"engine": parts.pop(0)} if parts[0] in ("naive", "prefix", "packed") else {}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in SETTINGS or not value:
            raise argparse.ArgumentTypeError(f"{part!r} in mode {name!r}: expected KEY=VALUE, KEY one of {', '.join(SETTINGS)}")
        settings["batch_chains" if key == "batch" else key] = SETTINGS[key](value)
    return settings


def mode_name(name: str) -> str:
    mode_settings(name)
    return name


class PeakMemory:
    """Peak resident memory of this process while the block runs (sampled every 50 ms), in MB."""

    def __enter__(self) -> "PeakMemory":
        self._process, self._stop, self.peak_mb = psutil.Process(), threading.Event(), 0.0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)
            if self._stop.wait(0.05):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def naive_token_forwards(trace: dict) -> int:
    """What `naive` spends on the exact greedy trajectory of `trace`: per pass over a chain of length L
    with m reasoning tokens, one forward of the chain (L) and one of each candidate (m x (L - 1))."""
    n_prompt, n_answer, m = len(trace["prompt_ids"]), len(trace["answer_ids"]), len(trace["reasoning_ids"])
    total = 0
    for deleted in range(len(trace["deletion_order"])):
        length = n_prompt + (m - deleted) + n_answer
        total += length + (m - deleted) * (length - 1)
    return total


def measure_naive_rate(traces: list[dict], every: int, model: str = "smollm2-135m") -> tuple[float, int, float]:
    """Time `naive` on every `every`-th pass of the exact trajectories (each chain's first pass included):
    (token-forwards per second, token-forwards, seconds). Measures the rate on this machine, now, at these
    chains' shapes, without running `naive`'s whole prunes."""
    pruner = load_model(model, dtype="float32", device="cpu")
    forwards, seconds = 0, 0.0
    for trace in traces:
        ids = ChainIds(trace["prompt_ids"], trace["reasoning_ids"], trace["answer_ids"])
        scorer = ChainScorer(pruner.model, ids, trace["objective"], "naive", DEFAULT_MAX_BATCH_TOKENS)
        gone = trace["deletion_order"]
        for deleted in range(0, len(gone), every):
            remaining = [i for i in range(len(ids.reasoning_ids)) if i not in set(gone[:deleted])]
            start = time.perf_counter()
            scorer.candidates(remaining)
            seconds += time.perf_counter() - start
        forwards += scorer.stats.token_forwards
    return forwards / seconds, forwards, seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="the pruner (float32, CPU)")
    parser.add_argument("--gsm8k", type=Path, default=None, help="GSM8K train file (default: benchmarks.common's)")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--chains", type=Path, default=None,
                        help="prune these chains (JSONL) instead of GSM8K worked solutions; --examples etc. are ignored")
    parser.add_argument("--reference-seconds", type=float, default=None,
                        help="with --chains: the reference traces already in --work-dir (e.g. from a resumable "
                             "`chainprune prune`) are reused, and this is their wall time")
    parser.add_argument("--max-reasoning", type=int, default=60, help="longest reasoning kept, in words")
    parser.add_argument("--min-reasoning", type=int, default=0, help="shortest reasoning kept, in words")
    parser.add_argument("--modes", nargs="+", default=MODES, type=mode_name,
                        help="engine[,KEY=VALUE...], KEY one of " + ", ".join(SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=RUNS / "modes")
    parser.add_argument("--out", type=Path, default=RUNS / "modes-cpu.json")
    parser.add_argument("--reference", default="prefix", choices=["naive", "prefix", "packed"],
                        help="the exact engine whose traces the approximate modes are compared with")
    parser.add_argument("--naive-rate", type=float, default=None, metavar="TOKENS_PER_S",
                        help="instead of running naive, estimate it: its token-forwards counted on the reference's "
                             "exact trajectories, its time at this measured rate (naive token-forwards per second)")
    parser.add_argument("--naive-sample", type=int, default=None, metavar="EVERY",
                        help="estimate naive as --naive-rate does, at a rate measured here and now: naive timed on "
                             "every EVERY-th pass of the reference's exact trajectories")
    parser.add_argument("--merge", action="store_true",
                        help="add to the results already in --out (same chains) and reuse the exact reference traces "
                             "in --work-dir instead of re-running them")
    args = parser.parse_args(argv)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    chains = args.work_dir / "chains.jsonl"
    if args.chains is not None:
        if args.chains.resolve() != chains.resolve():
            chains.write_text(args.chains.read_text())
        args.examples, args.max_reasoning, args.min_reasoning = len(chains.read_text().splitlines()), None, None
    else:
        write_shuffled_chains(chains, args.examples, args.seed, args.max_reasoning, args.min_reasoning, args.gsm8k)
    previous = json.loads(args.out.read_text()) if args.merge and args.out.exists() else None
    chosen = (args.examples, args.max_reasoning, args.min_reasoning)
    if previous and (previous["examples"], previous["max_reasoning_words"], previous.get("min_reasoning_words", 0)) != chosen:
        parser.error(f"--merge: {args.out} holds another set of chains")
    results = dict(previous["modes"]) if previous else {}
    ref = args.reference
    reuse_exact = args.merge and ref in results and (args.work_dir / f"{ref}.jsonl").exists()
    if args.reference_seconds is not None and ref not in results:
        traces = [json.loads(line) for line in (args.work_dir / f"{ref}.jsonl").open()]
        results[ref] = {"seconds": args.reference_seconds, "token_forwards": sum(t["token_forwards"] for t in traces),
                        "examples": len(traces), "engine": ref, "run": "resumable `chainprune prune`, wall time as given"}
        reuse_exact = True
    for name in ([ref] if not reuse_exact else []) + [m for m in args.modes if m != ref]:
        # The reference also keeps every pass's exact candidate scores (<ref>.jsonl.scores.jsonl), for studying
        # screening rules along the exact trajectory; writing them costs nothing measurable.
        config = PruneConfig(model=args.model, keep=[0.9, 0.7, 0.5], dtype="float32", device="cpu",
                             save_scores=name == ref, **mode_settings(name))
        out = args.work_dir / f"{name}.jsonl"
        with PeakMemory() as memory:
            summary = run_prune(chains, out, config, overwrite=True)
        row = {"seconds": summary.seconds, "token_forwards": summary.token_forwards, "examples": summary.done,
               "engine": config.engine, "peak_rss_mb": round(memory.peak_mb, 1)}
        if name != ref:
            row["reference"] = ref
            fidelity = compare_traces(args.work_dir / f"{ref}.jsonl", out)
            at_half = next(k for k in fidelity.per_keep if k.keep == 0.5)
            row.update(overlap_mean=at_half.overlap_mean, overlap_min=at_half.overlap_min,
                       kendall_tau=at_half.kendall_tau_mean, objective_gap=at_half.objective_gap_mean)
        results[name] = row
        print(name, json.dumps(row), flush=True)
    if (args.naive_rate is not None or args.naive_sample is not None) and "naive" not in args.modes:
        traces = [json.loads(line) for line in (args.work_dir / f"{ref}.jsonl").open()]
        rate, sample = args.naive_rate, None
        if args.naive_sample is not None:
            rate, sampled_forwards, sampled_seconds = measure_naive_rate(traces, args.naive_sample, args.model)
            sample = {"every": args.naive_sample, "token_forwards": sampled_forwards,
                      "seconds": round(sampled_seconds, 1)}
        forwards = sum(naive_token_forwards(t) for t in traces)
        results["naive"] = {"token_forwards": forwards, "seconds": forwards / rate, "estimated": True,
                            "naive_rate": round(rate, 2), "examples": len(traces), "engine": "naive"}
        if sample:
            results["naive"]["rate_sample"] = sample
        print("naive (estimated)", json.dumps(results["naive"]), flush=True)
    for row in results.values():
        row["examples_per_hour"] = 3600 * row["examples"] / row["seconds"]
        if "naive" in results:
            row["speedup_vs_naive"] = results["naive"]["seconds"] / row["seconds"]
            row["token_forward_reduction"] = results["naive"]["token_forwards"] / row["token_forwards"]
    report = {
        "benchmark": "modes",
        "model": args.model,
        "examples": args.examples,
        "max_reasoning_words": args.max_reasoning,
        "min_reasoning_words": args.min_reasoning,
        "chains": str(args.chains) if args.chains else None,
        "modes": results,
    }
    write_result(args.out, report, command=command(__file__, argv))
    print(f"\n{'mode':>34} {'seconds':>8} {'ex/hour':>8} {'token-fwd':>10} {'vs naive':>8} {'peak MB':>8} "
          f"{'overlap@0.5':>11} {'min':>5} {'tau':>6} {'gap':>7}")
    for name, row in results.items():
        label = name + (" (est.)" if row.get("estimated") else "")
        print(f"{label:>34} {row['seconds']:8.1f} {row['examples_per_hour']:8.1f} {row['token_forwards']:10,d} "
              f"{row.get('speedup_vs_naive', float('nan')):7.1f}x {row.get('peak_rss_mb', float('nan')):8.0f} "
              f"{row.get('overlap_mean', 1.0):11.3f} {row.get('overlap_min', 1.0):5.2f} {row.get('kendall_tau', 1.0):6.3f} "
              f"{row.get('objective_gap', 0.0):7.3f}")
    return report


if __name__ == "__main__":
    main()
