# Two commands for a fresh machine (see README.md):
#   make demo   creates .venv, installs pgrad, trains PPO on CartPole-v1, evaluates it, plots it
#   make test   creates .venv if missing, installs pgrad with test extras, runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: demo test install clean

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

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
