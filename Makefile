# The commands people type. Everything runs from one virtual environment, .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo

.PHONY: venv test test-fast lint demo bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[test]"
	touch $@

# All tests, the slow end-to-end ones included (as CI runs them).
test: venv
	$(PY) -m pytest

# Without the slow end-to-end tests.
test-fast: venv
	$(PY) -m pytest -m "not slow"

lint: venv
	$(VENV)/bin/ruff check .

# Bake a project with the default answers into ./$(DEMO), install it, train it on digits.
demo: venv
	rm -rf $(DEMO)
	$(VENV)/bin/cookiecutter --no-input --output-dir . . project=$(DEMO)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e $(DEMO)
	cd $(DEMO) && git init --quiet && ../$(PY) train.py
	@echo "Run folder: $$(ls -d $(DEMO)/logs/train/runs/* | tail -n 1)"

# Training throughput of a baked project against hand-written loops (benchmarks/loops.py; README: Performance).
# BENCH_ARGS="--threads 1 --repeats 3 --readme '{{cookiecutter.project}}/README.md'" regenerates the table
# of the baked README (between its <!-- benchmark KEY --> markers).
bench: venv
	$(PY) benchmarks/throughput.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
