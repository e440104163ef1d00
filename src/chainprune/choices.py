"""The names a user chooses among (engines, rankers, backends, dtypes, devices) and the defaults shown with them,
kept apart from what they name: this module imports nothing it names, so the CLI can build its choices and
`--help` without loading torch or transformers.

`ENGINES` and `RANKERS` are the registries themselves: each name with where its object lives
("package.module:attribute"). `scoring.ENGINES` and `ranking.RANKERS` import those objects (`load`) when their
package is imported; nothing else lists the names. This module does not know what an engine or a ranker is.
The other layers take their names from here (`models.DTYPES`, `models.DEVICES`, `generation.BACKENDS`,
`models.gguf.STORE_DTYPES`, `analysis.surrogate.FEATURE_KINDS`).
"""

from __future__ import annotations

import importlib
from typing import Any

ENGINES = {
    "prefix": "chainprune.scoring.prefix:PREFIX",
    "packed": "chainprune.scoring.packed:PACKED",
    "naive": "chainprune.scoring.naive:NAIVE",
}
RANKERS = {
    "uniform": "chainprune.ranking.uniform:uniform",
    "surprisal": "chainprune.ranking.surprisal:surprisal",
    "h2o": "chainprune.ranking.h2o:h2o",
    "tokenskip": "chainprune.ranking.tokenskip:tokenskip",
    "greedy": "chainprune.ranking.greedy:greedy",
    "surrogate": "chainprune.ranking.surrogate:surrogate",
}
BACKENDS = ("transformers", "vllm")
DTYPES = ("float32", "float64", "bfloat16", "float16")  # besides "auto"
DEVICES = ("auto", "cpu", "cuda")
STORE_DTYPES = ("float32", "bfloat16")  # of a converted GGUF file on disk
SURROGATE_FEATURES = ("attention", "attention-split+given")  # a saved surrogate without a kind is "attention"

DEFAULT_MODEL = "smollm2-135m"  # the bundled pruner, offline
DEFAULT_ENGINE = "packed"  # the fastest exact engine measured
DEFAULT_MAX_BATCH_TOKENS = 8192
DEFAULT_DTYPE = "auto"  # bfloat16 on CUDA, float32 on CPU (models.resolve_dtype)
DEFAULT_DEVICE = "auto"  # CUDA when there is one
DEFAULT_CLASSIFIER = "microsoft/llmlingua-2-xlm-roberta-large-meetingbank"


def load(where: str) -> Any:
    """The object a registry entry points at ("package.module:attribute"), importing its module."""
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)
