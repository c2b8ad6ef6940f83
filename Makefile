# The two commands a newcomer needs are `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv test

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The whole test suite. Needs a running Docker daemon (.ci/run starts one) and Debian's hwloc.
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)
