"""What every benchmark shares: the run a result came from (date, machine, torch, device, commit, command),
writing a result, and GSM8K's human worked solutions as chains.

It knows nothing of engines, modes or what a benchmark measures: a script builds its result as a dict and
`write_result` adds the run under "run". GSM8K's train split is read from `data/gsm8k/train.jsonl` (`make gsm8k`)
or else from `../shared/data/gsm8k/train.jsonl` beside the repository (the layout the recorded benchmarks ran
in); any script that reads it takes `--gsm8k FILE` for another file, e.g. the shipped
`data/gsm8k/train-sample.jsonl`. The library itself never reads it at run time.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GSM8K_TRAIN = ROOT / "data" / "gsm8k" / "train.jsonl"
GSM8K_SHARED = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
GSM8K_SAMPLE = ROOT / "data" / "gsm8k" / "train-sample.jsonl"
# Where a speed benchmark (RUNS) or a study (STUDY_RUNS) writes unless told otherwise: never a committed result's
# path (benchmarks/results/ holds those; a run replaces one only when its --out names it).
RUNS = Path("runs") / "bench"
STUDY_RUNS = Path("runs") / "studies"


# ---- the run a result came from ----


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """The repository's short commit hash, with "+dirty" when tracked files have changes; "unknown" outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def device_name(device: str = "cpu") -> str:
    """The CUDA device's name on a GPU, the CPU's model otherwise."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def machine(device: str = "cpu") -> dict[str, Any]:
    """Where and when a result is measured: date (ISO, UTC), machine (platform, CPU, cores, torch threads),
    torch and transformers versions, the device's name and the git commit."""
    import torch
    import transformers

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device_name(device),
        "commit": git_commit(),
    }


def command(script: str, argv: list[str] | None = None) -> str:
    """The command line that runs `script` (a file under benchmarks/) as a module with `argv` (default: this
    process's arguments), e.g. `python -m benchmarks.speed.bench_engines --examples 1`."""
    module = ".".join(Path(script).resolve().relative_to(ROOT).with_suffix("").parts)
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", module, *map(str, args)])


def write_result(path: Path, result: dict[str, Any], *, command: str | None = None, device: str = "cpu") -> Path:
    """Write `result` as JSON (indent 2) at `path`, creating its folder, with the run it came from under "run"
    (`machine(device)`, and `command` when given)."""
    run = {**machine(device), **({"command": command} if command else {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result, "run": run}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


# ---- GSM8K worked solutions as chains ----


def gsm8k_train() -> Path:
    """GSM8K's train split: `data/gsm8k/train.jsonl` if present, else `../shared/data/gsm8k/train.jsonl`."""
    return GSM8K_TRAIN if GSM8K_TRAIN.exists() else GSM8K_SHARED


def gsm8k_records(path: Path | None = None) -> list[dict[str, Any]]:
    """GSM8K train (or the file at `path`), one dict per line, in file order (line i is `gsm8k-train-i`)."""
    path = Path(path) if path is not None else gsm8k_train()
    if not path.exists():
        raise SystemExit(f"no GSM8K train split at {path}: run `make gsm8k`, or pass --gsm8k FILE "
                         f"(e.g. {GSM8K_SAMPLE.relative_to(ROOT)}, shipped)")
    with path.open() as f:
        return [json.loads(line) for line in f]


def solution_chain(record: dict[str, Any], index: int) -> dict[str, Any]:
    """The chain of GSM8K train record number `index`: {"id": "gsm8k-train-I", "question", "reasoning", "answer"}.

    The reasoning is the solution's text before `####` with its `<<...>>` calculator notes stripped
    (`chainprune.tasks.gsm8k.solution_reasoning`), the answer "The answer is N." with N as the record writes it
    after `####` (not normalized: the recorded benchmarks' chains were built this way)."""
    from chainprune.tasks.gsm8k import solution_reasoning

    answer = record["answer"].rsplit("####", 1)[1].strip()
    return {"id": f"gsm8k-train-{index}", "question": record["question"], "reasoning": solution_reasoning(record),
            "answer": f"The answer is {answer}."}


def write_shuffled_chains(path: Path, n: int, seed: int, max_words: int, min_words: int = 0,
                          gsm8k: Path | None = None) -> None:
    """The first `n` chains of a seeded shuffle of GSM8K train whose reasoning has `min_words` to `max_words`
    words, as a chains file at `path`."""
    records = gsm8k_records(gsm8k)
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    lines = []
    for i in order:
        chain = solution_chain(records[i], i)
        if min_words <= len(chain["reasoning"].split()) <= max_words:
            lines.append(json.dumps(chain))
        if len(lines) == n:
            break
    Path(path).write_text("\n".join(lines) + "\n")
