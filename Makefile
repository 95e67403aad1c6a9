# Two commands on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make serve   set up and run the service (embedded worker pool, no Redis)
#   make test    set up and pass the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup serve test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

serve:
	bash deploy/install-system-deps.sh serve
	$(MAKE) setup
	$(BIN)/reward-service serve --host $(HOST) --port $(PORT)

test:
	bash deploy/install-system-deps.sh test
	$(MAKE) setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/bench_math.py
	$(BIN)/python bench/bench_humaneval.py
	$(BIN)/python bench/bench_scaleout.py
	$(BIN)/python bench/bench_cache.py

clean:
	rm -rf $(VENV) .pytest_cache
