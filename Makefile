# One command for the tests: `make test` creates (or reuses) .venv, installs the package with its extras, then
# lints and runs pytest. pip's cache is kept between runs (~/.cache/pip).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test lint install clean demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev,dicom,video,onnx]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The main job on the built-in default: train on the generated demo dataset (random backbone unless the DINOv3
# weights are in bundle/models), then evaluate the best checkpoint on the demo's test split.
demo: install
	$(PY) -m monai.bundle run training --config_file bundle/configs/train.json
	$(PY) -m monai.bundle run evaluating --config_file "['bundle/configs/train.json','bundle/configs/evaluate.json']"
