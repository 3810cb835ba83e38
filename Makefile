# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
VENV ?= .venv
PY := $(VENV)/bin/python
export DETECTRON2_DATASETS ?= $(CURDIR)/datasets

.PHONY: setup setup-mmdet demo test lint bench clean

setup:
	@bash tools/setup_env.sh

# The MMDetection stack (mmcv built once into a cached wheel: 10-20 min the first time on 2 cores).
# It never fails the make: a failure is written where tests/mmdet read it and fail naming it.
setup-mmdet: setup
	@VENV=$(VENV) bash tools/setup_mmdet.sh

demo: setup
	$(PY) tools/demo.py

test: setup setup-mmdet
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check featsr_d2 tools tests bench
	$(VENV)/bin/ruff format --check featsr_d2 tools tests bench

clean:
	rm -rf build featsr_d2/_C*.so output
