# Veil: the two commands a fresh machine needs are `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the pair shipped with this environment; pip uses any newer CUDA build on GPU hosts.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test test-all lint bench-xnn clean

$(BIN)/veil: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(BIN)/veil

setup: $(BIN)/veil

demo: setup
	$(BIN)/veil demo

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

lint: setup
	$(BIN)/ruff check .

bench-xnn: setup
	$(BIN)/python bench/xnn.py

clean:
	rm -rf runs .pytest_cache
