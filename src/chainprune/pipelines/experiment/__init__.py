"""`chainprune experiment CONFIG.yaml`: the paper's distillation grid, from questions to an accuracy table.

teachers x pruners x students x methods x keep fractions, in stages:

    data      questions carved into train / dev / test (disjoint, seeded) from the dataset's train split
    chains    per teacher: rejection-sampled teacher chains (`run_teacher`), or the dataset's own worked solutions
    traces    per (chains, pruner): greedy traces down to a floor below the smallest keep (`run_prune`)
    pruned    per (chains, pruner, method, keep, student tokenizer): chains cut at matched student lengths
              (`run_match` for greedy, `run_baseline` for the others)
    student   per (pruned set, student): SFT and the best checkpoint by dev accuracy (`run_distill`)
    eval      per student: test accuracy and output reasoning length (`run_evaluate`); also the zero-shot student
    report    results.csv / results.md, accuracy-vs-keep.png / .svg, resolved-config.yaml

Every stage lives in `OUT/stages/KIND-KEY/`, KEY a hash of the stage's resolved inputs (its config slice and
the keys of the stages it reads), and writes a `done` marker last. A rerun skips finished stages and resumes
unfinished ones (each pipeline appends per record); changing one setting reruns only the stages it reaches.

Modules: `config` (the YAML into specs), `stages` (the stage cache and each stage's key), `data` (the data
stage and the `solutions` teacher), `grid` (the loop over the grid), `results` (rows, table, plots).
"""

from chainprune.pipelines.experiment.config import (
    SOLUTIONS,
    DataSpec,
    EvalSpec,
    ExperimentConfig,
    PrunerSpec,
    StudentSpec,
    TeacherSpec,
    label,
    load_config,
    parse_config,
    prune_config,
    pruner_floor,
    resolved,
    teacher_config,
)
from chainprune.pipelines.experiment.data import SOLUTION_CHAINS, gsm8k_solution_chain, make_data
from chainprune.pipelines.experiment.grid import ModelCache, run_experiment
from chainprune.pipelines.experiment.results import COLUMNS, ExperimentResult, results_markdown, write_results
from chainprune.pipelines.experiment.stages import StageCallback, Stages, digest, file_digest, traces_key

__all__ = [
    "COLUMNS", "SOLUTIONS", "SOLUTION_CHAINS", "DataSpec", "EvalSpec", "ExperimentConfig", "ExperimentResult",
    "ModelCache", "PrunerSpec", "StageCallback", "Stages", "StudentSpec", "TeacherSpec", "digest", "file_digest",
    "gsm8k_solution_chain", "label", "load_config", "make_data", "parse_config", "prune_config", "pruner_floor",
    "resolved", "results_markdown", "run_experiment", "teacher_config", "traces_key", "write_results",
]
