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

# Extraction quality and speed against the replica's gold, beside trafilatura; fails
# when a goal is missed (README "Extraction quality").
bench: install
	$(BIN)/newsarchive eval --check --repeat 5

clean:
	rm -rf $(VENV) archive state .pytest_cache
