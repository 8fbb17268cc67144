# Two entry points for a fresh machine: `make demo` (the main job end to end) and `make test`.
# Each installs what it needs: a virtualenv in .venv, Claude Code and Codex from npm in .tools/,
# redis-server from Debian's packages (tests start their own on loopback), and openssl (the
# trust tests hash a CA into an OS-store folder as update-ca-certificates does).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install tools demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

.tools/node_modules/.bin/claude:
	mkdir -p .tools
	npm install --silent --no-audit --no-fund --prefix .tools @anthropic-ai/claude-code

.tools/node_modules/.bin/codex:
	mkdir -p .tools
	npm install --silent --no-audit --no-fund --prefix .tools @openai/codex

tools: .tools/node_modules/.bin/claude .tools/node_modules/.bin/codex
	@command -v redis-server >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	  || echo "warning: could not install redis-server; Redis tests will say so"; }
	@command -v openssl >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null) \
	  || echo "warning: could not install openssl; the OS-store trust tests need its x509 -hash"; }

demo: install
	$(PY) examples/demo.py

test: install tools
	PATH="$(CURDIR)/.tools/node_modules/.bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m pip install -q -e '.[test,bench]'
	@echo "bench dependencies installed; see $(PY) bench/gateway.py --help"

clean:
	rm -rf $(VENV) .tools .pytest_cache .hypothesis
