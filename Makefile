# `make test` installs everything the tests need into .venv (from scratch on a fresh machine) and runs them.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test install demo
test: install
	$(PY) -m pytest

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"

demo:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e .
	$(VENV)/bin/cnnlens demo
