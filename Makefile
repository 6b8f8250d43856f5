# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-all test-slow bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,annotate,text]'
	touch $(STAMP)

demo: $(STAMP)  ## generate a sample corpus and curate it end to end
	$(BIN)/clipfactory demo --workdir demo-out

test: $(STAMP)  ## the default suite (a few minutes on 2 cores)
	$(BIN)/pytest -q -m "not slow and not ray and not gpu"

test-slow: $(STAMP)
	$(BIN)/pytest -q -m "slow"

test-all: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)  ## throughput against decode-only, 10 minutes of 640x360 H.264
	$(BIN)/clipfactory bench --minutes 10

lint: $(STAMP)
	$(BIN)/ruff check clipfactory tests

clean:
	rm -rf demo-out bench-out .pytest_cache
