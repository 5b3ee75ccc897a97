# The README's two commands: `make demo` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On a machine without an NVIDIA GPU take the CPU wheel (a bare `torch` pulls a multi-GB CUDA build).
# Override, e.g.: make test TORCH='torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124'
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.4' || echo 'torch==2.13.0')
STAMP := $(VENV)/.installed

.PHONY: setup browser test demo lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The studio's browser tests drive Debian's chromium through Playwright (Playwright's own browser download
# is not reachable). As root (CI) it is installed once; elsewhere install it yourself or set CHROMIUM=path.
# Without one the browser tests fail, naming the fix.
browser:
	@if [ -n "$$CHROMIUM" ] || [ -x /usr/lib/chromium/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium for the browser tests (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the studio's browser tests will fail"; \
	else echo "note: no Chromium found: the studio's browser tests will fail (sudo apt-get install chromium, or set CHROMIUM)"; fi

test: $(STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/concept-transfer demo

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
