# Set-up and the two commands of the README. Everything installs from this repository's own files.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medseg-installed
# CPU build of torch that pip finds on these machines; GPU hosts install torch>=2.3 from pyproject instead.
TORCH  ?= torch==2.13.0
DEBS   := dcmtk dicom3tools

.PHONY: setup system-packages demo test test-all bench clean

setup: $(STAMP)

system-packages:
	@if ! command -v storescu >/dev/null || ! command -v dciodvfy >/dev/null; then \
	  echo "installing $(DEBS) (apt-get)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBS); \
	fi

$(STAMP): pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# The main job on the embedded default: make a phantom study and segment it.
demo: setup
	$(BIN)/medseg phantom --out demo/case1 --seed 123
	$(BIN)/medseg segment demo/case1/dicom --out demo/result --nifti

# The test suite CI runs (slow cases excluded; see README).
test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m ''

bench: setup
	$(BIN)/python bench/segment.py

clean:
	rm -rf $(VENV) demo .pytest_cache
