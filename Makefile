# newsarchive — set-up and checks. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYWB_VENV := .venv-pywb
CHROMIUM  := /usr/bin/chromium
STORE  ?= archive
STATE  ?= state

.PHONY: install pywb chromium redis demo test drills eval bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# pywb (replay) and wacz in their own venv: see requirements-pywb.txt for why.
pywb: $(PYWB_VENV)/.installed

$(PYWB_VENV)/.installed: requirements-pywb.txt
	$(PYTHON) -m venv $(PYWB_VENV)
	$(PYWB_VENV)/bin/pip install --quiet --upgrade pip
	$(PYWB_VENV)/bin/pip install --quiet -r requirements-pywb.txt
	touch $@

# Headless Chromium (Debian package) for the replay browser test.
chromium: $(CHROMIUM)

$(CHROMIUM):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# redis-server (Debian package) for the distributed-crawl tests.
REDIS_SERVER := /usr/bin/redis-server
redis: $(REDIS_SERVER)

$(REDIS_SERVER):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server

# Crawl the bundled portal replica with production URLs and settings into ./archive.
demo: install
	$(BIN)/newsarchive demo --store $(STORE) --state-dir $(STATE)

# Starts what the tests need (the replica and a moto S3 server, from pytest fixtures).
test: install pywb chromium redis
	$(BIN)/python -m pytest -q -m "not slow_drill"

# The failure drills (kills, store/disk/portal faults, hostile input), the slow ones
# included; prints the table drill / trials / passed / data lost / duplicates.
drills: install pywb redis
	$(BIN)/python -m pytest -q -m "drill or slow_drill"

# Extraction quality and speed against the replica's gold, beside trafilatura; fails
# when a goal is missed (README "Extraction quality").
eval: install
	$(BIN)/newsarchive eval --check --repeat 5

# Synthetic portal of 10,000 and 50,000 articles, bare Scrapy vs the full pipeline,
# extraction vs trafilatura; writes BENCH.md (14 to 50 minutes on 2 cores, by machine). Not part of `make test`.
BENCH_ARGS ?= --sizes 10000,50000 --bare-sizes 10000 --profile 3000
bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(PYWB_VENV) archive state .pytest_cache test-artifacts
