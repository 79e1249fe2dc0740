# Everything the project needs is installed by these targets; nothing by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SIGNT5 := $(VENV)/bin/signt5
DATA_DIR ?= data/fingerspelling

.PHONY: install demo test test-all bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(SIGNT5) build-fingerspelling --output_dir $(DATA_DIR)
	$(SIGNT5) data-summary --manifest $(DATA_DIR)/manifest.csv

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ''

bench: install
	$(PY) benchmarks/bench_data.py --manifest $(DATA_DIR)/manifest.csv

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
