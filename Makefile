# Veil: the two commands a fresh machine needs are `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the pair shipped with this environment; pip uses any newer CUDA build on GPU hosts.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup browser demo test test-all lint typecheck check bench-xnn bench-table2 clean

$(BIN)/veil: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(BIN)/veil

setup: $(BIN)/veil

# Headless Chromium for the report's browser test (Debian packages); skipped quietly where apt is absent,
# unless VEIL_REQUIRE_BROWSER=1 (.ci/run sets it, and VEIL_REQUIRE_DATA=1: there a missing browser or
# missing ../shared data fails the run instead of skipping the tests that need them).
browser:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	  { echo "warning: could not install chromium; the browser test will be skipped"; \
	    [ "$${VEIL_REQUIRE_BROWSER:-0}" != 1 ] || { echo "VEIL_REQUIRE_BROWSER=1: failing"; exit 1; }; }; \
	fi

demo: setup
	$(BIN)/veil demo

test: setup browser
	$(BIN)/python -m pytest -q

test-all: setup browser
	$(BIN)/python -m pytest -q -m ''

lint: setup
	$(BIN)/ruff check .

# mypy at the oldest supported Python (pyproject's [tool.mypy]: python_version 3.10, over src/veil)
typecheck: setup
	$(BIN)/mypy

# the static checks .ci/run runs before the tests
check: lint typecheck

bench-xnn: setup
	$(BIN)/python bench/xnn.py

bench-table2: setup
	$(BIN)/python bench/table2.py --owner-epochs 20

clean:
	rm -rf runs .pytest_cache
