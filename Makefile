# The two commands of this project: `make demo` and `make test`. Both bootstrap .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FS := $(VENV)/bin/fs
STAMP := $(VENV)/.installed

.PHONY: demo test test-pandas2 bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) definitions/generate_data.py
	$(FS) --repo definitions apply
	$(FS) --repo definitions materialize-incremental
	$(PY) definitions/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

# The same suite against pandas 2 (the default install takes the current pandas 3).
test-pandas2:
	test -x .venv-pandas2/bin/python || $(PYTHON) -m venv .venv-pandas2
	.venv-pandas2/bin/python -m pip install --quiet --upgrade pip
	.venv-pandas2/bin/python -m pip install --quiet -e ".[dev]" "pandas>=2,<3"
	.venv-pandas2/bin/python -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/pit_join.py
	$(PY) benchmarks/online.py
	$(PY) benchmarks/materialize.py
	$(PY) benchmarks/server.py
	$(PY) benchmarks/predict.py

# ruff (lint and format) on the Python of the repo; mypy: strict on featurestore/ and server/
# (what it checks and how is set in pyproject.toml, [tool.mypy]).
lint: $(STAMP)
	$(VENV)/bin/ruff check featurestore server tests benchmarks definitions
	$(VENV)/bin/ruff format --check featurestore server tests benchmarks definitions
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .venv-pandas2 definitions/data .pytest_cache .hypothesis .bench .mypy_cache
