# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-suites test-python lint bench bench-peers release clean

setup: $(STAMP)

$(STAMP): python-sdk/pyproject.toml state-manager/pyproject.toml requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e 'python-sdk[otel]' -e 'state-manager[otel,s3]' -r requirements-dev.txt
	@# A .venv made before the CLI moved to the SDK: upgrading the server package there removes the
	@# `exosphere` script it used to own, after the SDK has installed its own. Put the SDK's back.
	test -x $(BIN)/exosphere || $(BIN)/pip install -q --no-deps --force-reinstall -e python-sdk
	touch $(STAMP)

demo: setup
	$(BIN)/python examples/demo.py

lint: setup
	$(BIN)/ruff check python-sdk state-manager bench examples testing scripts
	$(BIN)/mypy --strict python-sdk/src testing/src scripts/release.py
	$(BIN)/mypy --strict state-manager/src
	$(BIN)/lint-imports state-manager/pyproject.toml

# Each part of the product brings its own test script; `make test` runs them all, with a PostgreSQL
# cluster that it stops afterwards if it started it (scripts/with-postgres.sh).
test: setup lint
	@scripts/with-postgres.sh $(MAKE) --no-print-directory test-suites

test-suites:
	$(BIN)/pytest python-sdk/tests state-manager/tests
	@for script in scripts/test-*.sh; do [ -e "$$script" ] || continue; echo "== $$script"; bash "$$script" || exit 1; done

# dist/: wheels, sdists and the npm tarball, a CycloneDX SBOM (JSON and XML) each, SHA256SUMS (docs/install.md).
release: setup
	$(BIN)/python scripts/release.py --out dist

# `make bench PEERS=celery` runs the Celery peer right after, for one table of both (docs/benchmarks.md).
bench: setup
	@export EXOSPHERE_BENCH_POSTGRES_URL=$$(scripts/postgres.sh start) && \
		$(BIN)/python bench/run.py $(if $(PEERS),--peers $(PEERS))

# The same workloads done the Celery way (Redis as broker and backend), in its own venv; not part of `make test`.
bench-peers:
	bench/peers/celery/run.sh

clean:
	rm -rf $(VENV) bench/peers/celery/.venv .mypy_cache .ruff_cache .pytest_cache dist
