# The two commands of this project: `make demo` and `make test`. Both bootstrap .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FS := $(VENV)/bin/fs
# One stamp per install: the demo's (the server and the model registry, and httpx2 for the demo's
# in-process HTTP client) and the development toolchain's (tests, lint, benchmarks: .[dev], which
# holds the demo's too, so installing it marks both done). `make demo` then `make test` installs
# only what the demo lacked; neither reinstalls until pyproject.toml changes.
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-pandas2 bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[server,models]" "httpx2>=2.0"
	touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) definitions/generate_data.py
	$(FS) --repo definitions apply
	$(FS) --repo definitions materialize-incremental
	$(PY) definitions/demo.py
	$(FS) --repo definitions retrain trip_completion

test: $(DEV_STAMP)
	$(PY) -m pytest -q

# The same suite against pandas 2 (the default install takes the current pandas 3).
test-pandas2:
	test -x .venv-pandas2/bin/python || $(PYTHON) -m venv .venv-pandas2
	.venv-pandas2/bin/python -m pip install --quiet --upgrade pip
	.venv-pandas2/bin/python -m pip install --quiet -e ".[dev]" "pandas>=2,<3"
	.venv-pandas2/bin/python -m pytest -q

bench: $(DEV_STAMP)
	$(PY) benchmarks/pit_join.py
	$(PY) benchmarks/online.py
	$(PY) benchmarks/materialize.py
	$(PY) benchmarks/server.py
	$(PY) benchmarks/predict.py
	$(PY) benchmarks/shadow.py
	$(PY) benchmarks/aggregations.py
	$(PY) benchmarks/on_demand.py
	$(PY) benchmarks/monitoring.py
	$(PY) benchmarks/ui.py
	$(PY) benchmarks/scale.py

# ruff (lint and format) on the Python of the repo; mypy: strict on featurestore/ and server/
# (what it checks and how is set in pyproject.toml, [tool.mypy]).
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check featurestore server tests benchmarks definitions
	$(VENV)/bin/ruff format --check featurestore server tests benchmarks definitions
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .venv-pandas2 definitions/data .pytest_cache .hypothesis .bench .mypy_cache
