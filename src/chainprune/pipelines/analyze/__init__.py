"""The analyses of what greedy pruning keeps (the paper's §5, App. D-E): read traces, call the pure analysis
code, write JSONL / CSV / figures.

- `run_annotate`: a functional category on every trace token (appended per record, resumable);
- `run_retention`: category retention curves for annotated trace files and for baseline rankers;
- `run_dynamics`: Hit@|S| of dynamic vs frozen vs random rankings, from a `--save-scores` sidecar;
- `run_surrogate`: attention features -> MLP predicting the post-deletion objective;
- `run_judge`: the readability rubric per keep fraction through an OpenAI-compatible endpoint.

One module per analysis (`annotate`, `retention`, `dynamics`, `judge`, `surrogate`) and what they share
(`common`); this module re-exports what the CLI and tests use.
"""

from chainprune.pipelines.analyze.annotate import make_annotator, run_annotate
from chainprune.pipelines.analyze.common import DEFAULT_FRACTIONS, fractions_reached, read_records, write_csv
from chainprune.pipelines.analyze.dynamics import DynamicsResult, dynamics_scores_path, grid_passes, run_dynamics
from chainprune.pipelines.analyze.judge import JudgeResult, run_judge
from chainprune.pipelines.analyze.retention import RetentionResult, ranker_model, retention_pivot, run_retention
from chainprune.pipelines.analyze.surrogate import SurrogateData, SurrogateResult, run_surrogate, surrogate_data

__all__ = [
    "DEFAULT_FRACTIONS", "DynamicsResult", "JudgeResult", "RetentionResult", "SurrogateData", "SurrogateResult",
    "dynamics_scores_path", "fractions_reached", "grid_passes", "make_annotator", "ranker_model", "read_records",
    "retention_pivot", "run_annotate", "run_dynamics", "run_judge", "run_retention", "run_surrogate",
    "surrogate_data", "write_csv",
]
