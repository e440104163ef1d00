"""The stage cache: each stage's key, its folder `OUT/stages/KIND-KEY/`, and running a stage once.

KEY hashes the stage's inputs: the slice of the config that changes its output and the folder names of the
stages it reads. The input functions below are the only place a key's contents are written down; the folder
names of existing runs depend on them byte for byte (`tests/test_experiment_stages.py` pins them). This
module knows nothing about what a stage computes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chainprune.pipelines.experiment.config import (
    ExperimentConfig,
    PrunerSpec,
    StudentSpec,
    TeacherSpec,
    pruner_floor,
    pruner_settings,
    teacher_settings,
)

# Pruner settings that change only speed and memory, not the traces: left out of the traces stage's key.
SPEED_ONLY = ("max_batch_tokens", "batch_chains")
# Pruner settings keyed only away from these values: at them a pruner prunes as one keyed without them.
KEYED_WHEN_SET = {"margin": None, "surrogate": None, "save_scores": False, "unit": "token"}


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def folder_name(kind: str, inputs: dict[str, Any]) -> str:
    """KIND-KEY: the stage's folder under `OUT/stages/`."""
    return f"{kind}-{digest({'kind': kind, **inputs})}"


StageCallback = Callable[[str, str, str], None]  # (kind, key, status: run | resume | skip)


class StageBusy(Exception):
    """Another process is running this stage now (it holds the stage's lock)."""

    def __init__(self, folder: Path):
        super().__init__(f"{folder.name} is being run by another process")
        self.folder = folder


class Stages:
    """Runs a stage once: `OUT/stages/KIND-KEY/` with `stage.json` (its inputs) and `done` written last.

    A running stage holds an exclusive lock on its folder's `lock` file (released when it ends or its process
    dies), so several processes can work on one experiment: one that meets a stage another is running gets
    `StageBusy` (with `wait=False`) or waits for it, then finds it done."""

    def __init__(self, root: Path, on_stage: StageCallback | None = None):
        self.root = Path(root) / "stages"
        self.on_stage = on_stage or (lambda kind, key, status: None)
        self.log = Path(root) / "stages.log"

    def folder(self, kind: str, inputs: dict[str, Any]) -> Path:
        return self.root / folder_name(kind, inputs)

    def is_done(self, kind: str, inputs: dict[str, Any]) -> bool:
        return (self.folder(kind, inputs) / "done").exists()

    def run(self, kind: str, inputs: dict[str, Any], work: Callable[[Path], None], wait: bool = True,
            complete: Callable[[Path], bool] | None = None) -> Path:
        """The stage's folder, its `work` run first unless it is done. `complete(folder)`: whether a done stage
        still holds what this caller needs (a snapshot may leave large files out); if not, it is run again from
        scratch (what is left of it was made elsewhere, perhaps with other paths)."""
        folder = self.folder(kind, inputs)
        key = folder.name.removeprefix(f"{kind}-")

        def usable() -> bool:
            return (folder / "done").exists() and (complete is None or complete(folder))

        if usable():
            self._report(kind, key, "skip")
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        lock = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise StageBusy(folder) from None
            if usable():  # finished by the process we waited for
                self._report(kind, key, "skip")
                return folder
            if (folder / "done").exists():  # done, but not holding what this caller needs: start afresh
                for path in folder.iterdir():
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.name != "lock":
                        path.unlink()
            status = "resume" if (folder / "stage.json").exists() else "run"
            (folder / "stage.json").write_text(json.dumps({"kind": kind, "inputs": inputs}, indent=2, default=str) + "\n")
            self._report(kind, key, status)
            work(folder)
            (folder / "done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        finally:
            os.close(lock)  # releases the lock
        return folder

    def _report(self, kind: str, key: str, status: str) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {status} {kind}-{key}\n")
        self.on_stage(kind, key, status)


def snapshot(root: Path, target: Path) -> int:
    """Copy the stage cache of the run at `root` into `target` (a `stages/` folder to commit, or another run's)
    without what is large or of this process alone: locks, training checkpoints and students' adapters
    (`best/`). A restored student is trained again only where its test evaluation still needs its adapter
    (`Grid.evaluated_or_kept`); stages without `done` resume record by record. Returns the files copied."""
    copied = []

    def skipped(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n == "lock" or n == "best" or n.startswith("checkpoint-")]

    shutil.copytree(Path(root) / "stages", target, ignore=skipped, dirs_exist_ok=True,
                    copy_function=lambda src, dst: copied.append(shutil.copy2(src, dst)))
    return len(copied)


# ---- stage inputs: `folder` arguments are the folder names (KIND-KEY) of the stages read ----


def traces_key(pruner: PrunerSpec) -> dict[str, Any]:
    """The pruner settings that key its traces stage: those that change traces (the floor is keyed apart)."""
    return {k: v for k, v in pruner_settings(pruner).items()
            if k not in SPEED_ONLY and not (k in KEYED_WHEN_SET and v == KEYED_WHEN_SET[k])}


def data_inputs(config: ExperimentConfig) -> dict[str, Any]:
    """The data settings and the files' digests; `test_file` keyed only when set (runs without it keep their key)."""
    data_file, test_file = config.data.data_file, config.data.test_file
    data = {k: v for k, v in asdict(config.data).items() if k != "test_file"}
    inputs = {"dataset": config.dataset, "data": data, "data_file": data_file,
              "data_file_sha": file_digest(Path(data_file)) if data_file else None}
    if test_file is not None:
        inputs |= {"test_file": test_file, "test_file_sha": file_digest(Path(test_file))}
    return inputs


def chains_inputs(data: str, teacher: TeacherSpec, config: ExperimentConfig) -> dict[str, Any]:
    return {"data": data, "teacher": teacher_settings(teacher), "dtype": config.dtype}


def traces_inputs(chains: str, pruner: PrunerSpec, config: ExperimentConfig) -> dict[str, Any]:
    return {"chains": chains, "pruner": traces_key(pruner), "floor": pruner_floor(pruner, config.keep),
            "dtype": config.dtype}


def pruned_inputs(chains: str, traces: str | None, pruner: PrunerSpec, student: StudentSpec, method: str,
                  keep: float, config: ExperimentConfig) -> dict[str, Any]:
    """Greedy sets are keyed by their traces, uniform ones by the ranker's seed."""
    inputs = {"chains": chains, "pruner": traces_key(pruner), "method": method, "keep": keep,
              "student_tokenizer": student.model, "dtype": config.dtype}
    if method == "greedy":
        inputs["traces"] = traces
    elif method == "uniform":
        inputs["seed"] = config.seed
    return inputs


def student_inputs(pruned: str, student: StudentSpec, data: str, config: ExperimentConfig) -> dict[str, Any]:
    return {"pruned": pruned, "student": student.model, "sft": asdict(student.sft), "dev": data,
            "eval": asdict(config.eval), "dtype": config.dtype}


def full_student_inputs(chains: str, student: StudentSpec, data: str, config: ExperimentConfig) -> dict[str, Any]:
    """A student trained on the unpruned chains (keep 1.0): keyed by the chains instead of a pruned set."""
    return {"chains": chains, "keep": 1.0, "student": student.model, "sft": asdict(student.sft), "dev": data,
            "eval": asdict(config.eval), "dtype": config.dtype}


def eval_inputs(student: str, data: str, config: ExperimentConfig) -> dict[str, Any]:
    return {"student": student, "test": data, "eval": asdict(config.eval)}


def zeroshot_inputs(student: StudentSpec, data: str, config: ExperimentConfig) -> dict[str, Any]:
    return {"student": student.model, "test": data, "eval": asdict(config.eval), "dtype": config.dtype}
