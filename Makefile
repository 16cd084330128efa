# The two commands of the README: `make demo` and `make test` (each sets up .venv first).
# .venv is installed from requirements.lock (exact versions, sha256 hashes), then verified.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint lock check-env

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m asr_kd.environment --lock requirements.lock
	touch $@

setup: $(VENV)/.installed

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash recipes/demo/run.sh

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check asr_kd tests benchmarks recipes

check-env: setup
	$(PY) -m asr_kd.environment --lock requirements.lock

# Re-resolve every dependency deliberately (after editing pyproject.toml), then `make setup`.
lock: setup
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 -o requirements.lock
