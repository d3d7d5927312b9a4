# The two quick-start commands are `make demo` and `make test` (README).
# Both create the virtualenv on first use; .ci/run calls `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast perf clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: on these machines pip takes it from local disk.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m diffae_bench.references check

test: $(STAMP)
	$(PY) -m pytest -q

# The fast lane: leaves out the tests marked slow (they train a model, start a process or run a large network).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

perf: $(STAMP)
	$(VENV)/bin/bench perf

clean:
	rm -rf runs .pytest_cache
