"""The names a user chooses among (engines, rankers, backends, dtypes, devices) and the defaults shown with them,
kept apart from what they name: this module imports nothing, so the CLI can build its choices and `--help`
without loading torch or transformers.

It does not know what an engine or a ranker is. The registries that hold the objects (`scoring.ENGINES`,
`ranking.RANKERS`) are checked against these names by tests/test_choices.py; the others take their names from
here (`models.DTYPES`, `models.DEVICES`, `generation.BACKENDS`, `models.gguf.STORE_DTYPES`).
"""

ENGINES = ("prefix", "packed", "naive")
RANKERS = ("uniform", "surprisal", "h2o", "tokenskip", "greedy", "surrogate")
BACKENDS = ("transformers", "vllm")
DTYPES = ("float32", "float64", "bfloat16", "float16")  # besides "auto"
DEVICES = ("auto", "cpu", "cuda")
STORE_DTYPES = ("float32", "bfloat16")  # of a converted GGUF file on disk

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_MAX_BATCH_TOKENS = 8192
DEFAULT_CLASSIFIER = "microsoft/llmlingua-2-xlm-roberta-large-meetingbank"
