# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint bench clean ui

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/python scripts/demo.py

# The Dagster UI (webserver and daemon on 127.0.0.1) on the demo's data and simulator settings.
UI_PORT ?= 3000
ui: $(INSTALLED)
	$(BIN)/python scripts/ui.py --port $(UI_PORT)

# The virtualenv first: the browser test's Chromium must match the playwright it pins.
test: $(INSTALLED)
	scripts/test_parts.sh
	$(BIN)/ruff check .
	$(BIN)/mypy --strict pipeline
	$(BIN)/mypy resources assets
	$(BIN)/pytest -n 2 --durations=10

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check simulator tests/simulator

clean:
	rm -rf data .dagster_home

EVENTS ?= 1000000
MEMBERS ?= 50000  # events per gzip member of the hour (1000: a 1M-event hour in 1,000 members)
bench: $(INSTALLED)
	$(BIN)/python scripts/bench.py --events $(EVENTS) --member-events $(MEMBERS)
	$(BIN)/python scripts/bench.py --events $(EVENTS) --member-events $(MEMBERS) \
		--versus read_json --versus same_work --versus naive --versus ducklake
	$(BIN)/python scripts/bench_mixpanel.py --events $(EVENTS)
	$(BIN)/python scripts/bench_storage.py --events 1000000 --api
	$(BIN)/python scripts/bench_storage.py --events 5000000
