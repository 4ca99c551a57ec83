# Set-up and the two everyday jobs. Works on a bare machine with Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_QUERY := demo/gallery/shoes/$(shell ls demo/gallery/shoes | head -n 1)

.PHONY: demo test lint setup clean

demo: $(VENV)/.installed
	$(BIN)/lookalike index demo/gallery --index .lookalike-demo
	$(BIN)/lookalike search $(DEMO_QUERY) --index .lookalike-demo -k 5

test: $(VENV)/.installed
	bash scripts/install-test-tools
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check lookalike tests benchmarks

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .lookalike-demo
