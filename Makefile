# daq — two commands: `make demo` and `make test`. Both set up what they need, idempotently.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.daq-installed
# the browser tests use Debian's chromium (.ci/install-deps); Playwright must never fetch one
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = 1

.PHONY: demo test lint bench venv deps clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "daq needs Python >= 3.11 ($(PYTHON) is older)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

deps:
	.ci/install-deps

demo: venv
	$(BIN)/daq demo $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: venv deps lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: venv deps
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache artifacts
