# Two commands: `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD_INPUTS := pyproject.toml setup.py clients/python/pyproject.toml clients/python/setup.py \
	$(wildcard src/effigate_engine/*.pyx src/effigate_engine/*.pxd src/effigate_engine/*/*.pyx) \
	$(wildcard proto/effigate/v1/*.proto)
SAMPLE := samples/calendars/sydney-business-hours.json

.PHONY: run calendar test bench lint setup clean

# Each step says what it does, and pip shows what it downloads and builds (a first install
# takes two minutes or so).
$(STAMP): $(BUILD_INPUTS)
	@echo "==> creating the virtualenv in $(VENV)…"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip…"
	@$(PY) -m pip install -q --upgrade pip
	@echo "==> installing the build tools (setuptools, wheel, Cython, NumPy)…"
	@$(PY) -m pip install "setuptools>=69" wheel "cython>=3.0,<4" "numpy>=2.0,<3"
	@echo "==> installing Python dependencies and compiling the kernels (a minute or two)…"
	@$(PY) -m pip install --no-build-isolation -e ".[dev]"
	@echo "==> generating the gRPC stubs…"
	@$(PY) clients/python/setup.py stubs
	@echo "==> installing the Python client…"
	@$(PY) -m pip install -q --no-build-isolation -e clients/python
	@touch $(STAMP)
	@echo "==> ready: $(VENV)/bin/effigate"

setup: $(STAMP)

run: $(STAMP)
	@echo "==> starting the service with the demo MSP: $(VENV)/bin/effigate serve --demo"
	@$(VENV)/bin/effigate serve --demo

calendar: $(STAMP)
	$(VENV)/bin/effigate calendar $(SAMPLE) \
		--deadline 2026-12-23T16:00+11:00 4h \
		--deadline 2026-12-24T11:00+11:00 2h \
		--elapsed 2026-12-21T09:00+11:00 2026-12-24T09:00+11:00 \
		--is-open 2026-01-26T10:00+11:00 \
		--next-open 2026-11-21T12:00Z \
		--next-close 2026-11-23T00:00Z \
		--is-open now --next-open now

# The browser tests drive Debian's Chromium (Playwright downloads nothing): installed once.
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@echo "==> installing Debian's chromium for the browser tests (apt-get)…"
	@apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -q -n 2

bench: $(STAMP)
	$(PY) bench/bench_clock.py
	$(PY) bench/bench_sla.py
	$(PY) bench/bench_routing.py
	$(PY) bench/bench_billing.py
	$(PY) bench/bench_billing_run.py
	$(PY) bench/bench_store.py
	$(PY) bench/bench_service.py
	$(PY) bench/bench_scaleout.py
	$(PY) bench/bench_dataset_io.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src server clients/python tests bench
	$(VENV)/bin/lint-imports

clean:
	rm -rf build src/*.egg-info src/effigate_engine/*.so src/effigate_engine/_clock.c clients/python/src/effigate
