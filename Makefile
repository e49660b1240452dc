# `make test` installs everything the tests need into .venv (from scratch on a fresh machine) and runs them.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test test-fast install demo chromium
test: install chromium
	$(PY) -m pytest

# The fast tier: every test not marked `slow` (under 2 minutes on a 2-core CPU); installs only when
# .venv is missing. `make test` (and CI) still run everything.
test-fast:
	test -x $(PY) || $(MAKE) install chromium
	$(PY) -m pytest -m "not slow"

# The report's end-to-end tests open the page in headless Chromium (Debian's `chromium`): installed
# here when missing and running as root; otherwise say how.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "Chromium is missing: install it (sudo apt-get install chromium) or set CNNLENS_CHROMIUM"; exit 1; fi; }

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"

demo:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e .
	$(VENV)/bin/cnnlens demo
