# Set-up and the two commands of the README. Everything installs from this repository's own files.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medseg-installed
# pytorch-ignite, which only the tests' oracle needs (`python -m monai.bundle run` of a zoo bundle's
# evaluator config), lives in its own folder, put on PYTHONPATH by those tests alone: `import monai`
# imports ignite wherever it is installed (1.1-1.8 s in every process that segments), and a
# production install does not have it, so neither does the environment the suite and the benchmarks run.
ORACLE := $(VENV)/oracle
# CPU build of torch that pip finds on these machines; GPU hosts install torch>=2.3 from pyproject instead.
TORCH  ?= torch==2.13.0
DEBS   := dcmtk dicom3tools orthanc openssl chromium chromium-driver

.PHONY: setup system-packages demo test test-all lint bench clean

setup: $(STAMP)

system-packages:
	@if ! command -v storescu >/dev/null || ! command -v dciodvfy >/dev/null || ! command -v Orthanc >/dev/null \
	    || ! command -v openssl >/dev/null || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing $(DEBS) (apt-get)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBS); \
	fi

$(STAMP): pyproject.toml constraints.txt | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/pip install -q -c constraints.txt --no-deps --target $(ORACLE) pytorch-ignite
	touch $(STAMP)

# The main job on the embedded default: `medseg serve` (DICOM node + worker + HTTP API, SQLite and a
# local spool under demo/medseg-data) with config/medseg.toml and the default model ct-tumor 3.0.0;
# it pushes a held-out real sarcoma case (converted to DICOM with its attribution) to itself as the
# demo PACS and prints where the SEG went and its Dice against the expert outline. dcmtk storescp plays the PACS that receives SEGs
# (demo/pacs). Ctrl-C stops both.
demo: setup
	mkdir -p demo/pacs
	TCP_NODELAY=1 storescp -aet DEMO-PACS -od demo/pacs 11113 & pacs=$$!; trap "kill $$pacs" EXIT INT TERM; \
	$(BIN)/medseg serve --config config/medseg.toml --push-case tests/data/sts-ct/STS_006

# The test suite CI runs (slow cases excluded; see README).
test: setup
	$(BIN)/python -m pytest

# Lint (ruff, configured in pyproject.toml) and the layer contracts (import-linter, .importlinter).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test-all: setup
	$(BIN)/python -m pytest -m ''

bench: setup
	$(BIN)/python bench/segment.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/review.py
	$(BIN)/python bench/bundle.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/train_step.py

clean:
	rm -rf $(VENV) demo .pytest_cache
