# Two entry points, both from a fresh machine: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# a CPU wheel of torch 2.13.0 is at hand on these machines; a bare `torch` would pull CUDA
	$(BIN)/pip install torch==2.13.0

# stamps: reinstall only when the package's metadata changed (the install is editable)
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test,dist]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/acbo run

test: install-test
	$(BIN)/python -m pytest -n 2 --dist loadgroup

.PHONY: install install-test run test
