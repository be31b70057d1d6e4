# takefive: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-eager lint typecheck unit integration system-deps bench clean

$(STAMP): pyproject.toml setup.py src/takefive/_speedups.c src/takefive/_zmqcall.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Serves examples/hello.py on http://127.0.0.1:8000/ until Ctrl-C (built-in gateway, nothing else needed).
demo: $(STAMP)
	$(VENV)/bin/takefive serve examples/hello.py:app --listen 127.0.0.1:8000

# Debian packages the integration tests use; installed only when running as root and missing.
system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  command -v mongrel2 >/dev/null || missing="$$missing mongrel2-core"; \
	  command -v wrk >/dev/null || missing="$$missing wrk"; \
	  [ -e /usr/include/zmq.h ] || missing="$$missing libzmq3-dev"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	  ruby -e 'require "ffi-rzmq"' 2>/dev/null || missing="$$missing ruby ruby-ffi-rzmq"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests --ignore=tests/integration

integration: $(STAMP) system-deps
	$(VENV)/bin/pytest -q tests/integration

test: $(STAMP) system-deps lint typecheck
	$(VENV)/bin/pytest -q tests
	$(MAKE) --no-print-directory test-eager

# The runner starts requests as eager tasks on Python 3.12+ and as plain tasks on 3.11:
# run the runner's tests and the core suite on a 3.12 too, when the machine has one.
PY312 := $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	  $$p -c 'import sys' 2>/dev/null && { echo $$p; break; }; done)
test-eager:
ifneq ($(PY312),)
	test -x .venv312/bin/python || $(PY312) -m venv .venv312
	.venv312/bin/python -m pip install -q -e '.[dev]'
	.venv312/bin/pytest -q -p no:cacheprovider tests/test_runner.py tests/integration/test_core.py
else
	@echo "test-eager: no python3.12 on this machine; the eager-task path was not run"
endif

# About 15 minutes on 2 cores; writes bench/results/ and docs/performance.md (see bench/README.md).
bench: $(STAMP) system-deps
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench

clean:
	rm -rf $(VENV) .venv312 .mypy_cache .ruff_cache .pytest_cache
