# Two commands for a fresh machine (see README.md):
#   make demo   creates .venv, installs pgrad, trains PPO on CartPole-v1, evaluates it, plots it
#   make test   creates .venv if missing, installs pgrad with test extras, lints, runs the whole test suite
# and, for development (each also creates .venv if missing):
#   make test-fast   the same lint, then every test not marked slow (none of tests/learning)
#   make lint        ruff check + ruff format --check, as run by both test targets
#   make format      rewrites the code: ruff format, then ruff check --fix (prints what needs a hand)
#   make faults      the fault-injection suite (benchmarks/faults.py): kill -9 trials, then every other fault, two tables
#   make docs        the documentation site into site/ (mkdocs build --strict: warnings are errors)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUFF := $(BIN)/ruff
DEMO_DIR ?= runs/demo

.PHONY: demo test test-fast lint format install clean docs faults

# torch==2.13.0 first and exactly: it is the CPU wheel these machines hold on disk; any other
# resolution would download a multi-GB CUDA build. The stamp reinstalls when pyproject changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,ray,tune]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/pgrad train ppo CartPole-v1 --seed 0 --out $(DEMO_DIR)
	$(BIN)/pgrad eval $(DEMO_DIR) --episodes 20
	$(BIN)/pgrad plot $(DEMO_DIR) --out $(DEMO_DIR)/learning_curve.png

lint: $(VENV)/.installed
	$(RUFF) check .
	$(RUFF) format --check .

format: $(VENV)/.installed
	$(RUFF) format .
	$(RUFF) check --fix .

test: lint
	$(BIN)/python -m pytest -q

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

# the docs extra (mkdocs.yml's packages; the test extra has them too), without touching torch
$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

# the kill -9 fault suite (50 trials, ~10 min): its table is in BENCHMARKS.md, "Faults"
faults: $(VENV)/.installed
	$(BIN)/python benchmarks/faults.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
