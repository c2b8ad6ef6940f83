# The two commands a newcomer needs are `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv test lint image plugin shim-grammar demo

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# compat mode: a plain .pth instead of an import hook, ~12 ms less per Python start (setuptools
	# calls it transitional: fall back to the default mode once it is gone)
	$(PY) -m pip install -q -e '.[test,lint,ssh]' --config-settings editable_mode=compat 2>/dev/null \
	  || $(PY) -m pip install -q -e '.[test,lint,ssh]'
	touch $@

# The whole test suite. Needs a running Docker daemon (.ci/run starts one) and Debian's hwloc.
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# The checks the code assumes: ruff (pyflakes, bugbear, import order) on the Python files, mypy on
# tesson/ (both configured in pyproject.toml), shellcheck on the shell scripts (Debian's shellcheck).
SHELL_SCRIPTS = docker-plugin/docker-tesson docker-plugin/install scripts/* .ci/run benchmarks/*.sh
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	shellcheck $(SHELL_SCRIPTS)

# The tesson image, built as CI builds it: local Debian base (scripts/base-image), wheels fetched on
# this host, nothing downloaded inside `docker build`. With network, `docker build -t tesson .` works too.
image: venv
	scripts/build-image

# The `docker tesson` CLI plugin, into ~/.docker/cli-plugins (or $$DOCKER_CONFIG/cli-plugins).
plugin:
	docker-plugin/install

# The shim's copy of tesson's grammar (verbs, options, version, image), made from the parser. Run it
# after changing the command line; tests/test_shim.py fails while the copy is stale.
shim-grammar: venv
	$(PY) -m tesson.completion --write docker-plugin/docker-tesson

# Build the image, install the plugin, start a demo group behind the embedded balancer, query it.
DEMO_PORT ?= 8080
demo: image plugin
	DEMO_PORT=$(DEMO_PORT) scripts/demo
