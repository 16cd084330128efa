# The two commands of the README: `make demo` and `make test` (each sets up .venv first).
# .venv is installed from requirements.lock (exact versions, sha256 hashes), then verified.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test browser lint lock check-env

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m asr_kd.environment --lock requirements.lock
	touch $@

setup: $(VENV)/.installed

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash recipes/demo/run.sh

test: setup browser
	$(PY) -m pytest

# tests/runtime/test_runtime.py runs the server's web page in headless Chromium: as root with apt-get, install
# Debian's chromium when it is missing; otherwise say how (ASR_KD_NO_BROWSER=1 skips that test).
browser:
	@if [ "$$ASR_KD_NO_BROWSER" = 1 ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; \
	then :; elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser test (apt-get, about 35 s)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "apt-get install chromium failed: the browser test will fail"; \
	else echo "chromium missing: run 'apt-get install chromium' as root (or ASR_KD_NO_BROWSER=1 skips that test)"; fi

lint: setup
	$(VENV)/bin/ruff check asr_kd tests benchmarks recipes

check-env: setup
	$(PY) -m asr_kd.environment --lock requirements.lock

# Re-resolve every dependency deliberately (after editing pyproject.toml), then `make setup`.
lock: setup
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 -o requirements.lock
