# Two commands a new user needs: `make demo` and `make test`. Both create .venv if missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench bench-quick system clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# System packages the tests use (headless Chromium). Installed with apt-get when root.
system:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "install Debian's 'chromium' package (browser tests need /usr/bin/chromium)"; exit 1; fi

demo: $(STAMP)
	$(PY) -m aiosocker demo

lint: $(STAMP)
	$(PY) -m ruff check src tests bench examples
	$(PY) -m ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP) system
	$(PY) -m pytest --cov --cov-report=term

test: lint typecheck pytest

# The benchmarks also draw their plot (matplotlib) and time a headless Chromium.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,plot]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) system
	$(PY) -m bench

bench-quick: $(BENCH_STAMP) system
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
