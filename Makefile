# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
VENV ?= .venv
PY := $(VENV)/bin/python
export DETECTRON2_DATASETS ?= $(CURDIR)/datasets

.PHONY: setup demo test lint bench clean

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check featsr_d2 tools tests bench
	$(VENV)/bin/ruff format --check featsr_d2 tools tests bench

clean:
	rm -rf build featsr_d2/_C*.so output
