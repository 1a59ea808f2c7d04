# The two commands a new user needs: `make demo` and `make test`. Everything installs into .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The package is reinstalled every time: with a strict editable install a new module appears
# only after the install runs again (DESIGN §5).
install: $(BIN)/python
	$(BIN)/pip install -q --config-settings editable_mode=strict -e '.[all,dev]'

system-deps:
	bash scripts/system-deps.sh

demo: install
	$(BIN)/lomsong demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy -p lomsong

# soak: 100 SIGKILLs take about 4 minutes on two cores, so `make bench` runs them instead
pytest: install system-deps
	$(BIN)/pytest -q -n 2 --dist loadgroup -m 'not e2e and not soak'
	$(BIN)/pytest -q -m e2e

test: install system-deps lint typecheck pytest

bench: install system-deps
	$(BIN)/python -m bench
	$(BIN)/pytest -q -s -m soak

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache
