# Set-up and the everyday jobs. Works on a bare machine with Python 3.11.
# Two installs in one .venv: `make demo` (and `make serve`) install what a user needs to search; `make test` adds
# the test and development tools and every optional feature the suite covers (the dev extra).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_INDEX := .lookalike-demo
DEMO_QUERY := demo/gallery/shoes/$(shell ls demo/gallery/shoes | head -n 1)

.PHONY: demo serve test lint setup clean

demo: $(VENV)/.installed
	$(BIN)/lookalike index demo/gallery --index $(DEMO_INDEX)
	$(BIN)/lookalike search $(DEMO_QUERY) --index $(DEMO_INDEX) -k 5
	@echo "next: make serve   (the search page on this index), or . $(BIN)/activate to put lookalike on your PATH"

serve: $(VENV)/.installed-serve
	@test -d $(DEMO_INDEX) || $(BIN)/lookalike index demo/gallery --index $(DEMO_INDEX)
	$(BIN)/lookalike serve --index $(DEMO_INDEX)

test: $(VENV)/.installed-dev
	bash scripts/install-test-tools
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check lookalike tests benchmarks

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet .  # as from PyPI; setuptools notes every editable install, so the dev extra makes it one
	touch $@

$(VENV)/.installed-serve: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[serve]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) $(DEMO_INDEX)
