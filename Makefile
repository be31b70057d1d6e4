# takefive: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration system-deps bench clean

$(STAMP): pyproject.toml
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

bench: $(STAMP) system-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
