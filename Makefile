# newsarchive — set-up and checks. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  ?= archive
STATE  ?= state

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Crawl the bundled portal replica with production URLs and settings into ./archive.
demo: install
	$(BIN)/newsarchive demo --store $(STORE) --state-dir $(STATE)

# Starts what the tests need (the replica and a moto S3 server, from pytest fixtures).
test: install
	$(BIN)/python -m pytest -q

# Synthetic portal of 10,000 and 50,000 articles, bare Scrapy vs the full pipeline,
# extraction vs trafilatura; writes BENCH.md (about 35 minutes on 2 cores). Not part of `make test`.
BENCH_ARGS ?= --sizes 10000,50000 --bare-sizes 10000 --profile 3000
bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) archive state .pytest_cache
