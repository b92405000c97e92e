# Two commands a new user needs: `make demo` and `make test`. Both create .venv if missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs pytest bench bench-quick soak system clean

# What the package tests use offline (the tests make no registry traffic, only `make` does):
# a wheelhouse of the package's runtime requirements, from which tests/integration/
# test_package.py installs them into a fresh venv (`pip install --no-index --find-links`),
# and esbuild, in a prefix whose npm cache tests/browser/test_npm_package.py installs it
# from (`npm install --offline`). `python -m build --no-isolation` there uses the dev extra's
# build and hatchling.
WHEELHOUSE := $(VENV)/wheelhouse
WHEELHOUSE_STAMP := $(VENV)/.wheelhouse
NPM_PREFIX := $(VENV)/npm
NPM_STAMP := $(VENV)/.npm-installed
ESBUILD := 0.28.2

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(WHEELHOUSE_STAMP): $(STAMP) pyproject.toml
	rm -rf $(WHEELHOUSE)
	$(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > $(VENV)/requirements.txt
	$(PY) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) -r $(VENV)/requirements.txt
	touch $(WHEELHOUSE_STAMP)

# npm comes from `make system`: order-only, so the phony target does not force a reinstall.
$(NPM_STAMP): Makefile | system
	mkdir -p $(NPM_PREFIX)
	npm install --prefix $(NPM_PREFIX) --cache $(NPM_PREFIX)/cache --no-audit --no-fund \
		--no-update-notifier esbuild@$(ESBUILD)
	touch $(NPM_STAMP)

# System packages the tests use: headless Chromium, node/npm (the npm package's test
# packs the browser client and bundles it with esbuild), redis-server (rooms and resume
# across processes), nginx (the deploy recipe's test), iproute2, nftables and coturn (the real-network
# tests in tests/netns: NAT, firewalls and loss in network namespaces, a TURN relay).
# Installed with apt-get when root.
system:
	@pkgs=""; \
	command -v chromium >/dev/null 2>&1 || pkgs="chromium"; \
	command -v node >/dev/null 2>&1 || pkgs="$$pkgs nodejs"; \
	command -v npm >/dev/null 2>&1 || pkgs="$$pkgs npm"; \
	command -v redis-server >/dev/null 2>&1 || pkgs="$$pkgs redis-server"; \
	command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || pkgs="$$pkgs nginx"; \
	command -v ip >/dev/null 2>&1 || test -x /usr/sbin/ip || pkgs="$$pkgs iproute2"; \
	command -v nft >/dev/null 2>&1 || test -x /usr/sbin/nft || pkgs="$$pkgs nftables"; \
	command -v turnserver >/dev/null 2>&1 || pkgs="$$pkgs coturn"; \
	if [ -z "$$pkgs" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs; \
	else echo "install Debian's packages:$$pkgs (browser tests need /usr/bin/chromium, the npm test node and npm, the Redis tests redis-server, the nginx test nginx, the network tests iproute2, nftables and coturn)"; exit 1; fi

demo: $(STAMP)
	$(PY) -m aiosocker demo

lint: $(STAMP)
	$(PY) -m ruff check src tests bench examples docs/hooks
	$(PY) -m ruff format --check src tests bench examples docs/hooks

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP) $(WHEELHOUSE_STAMP) $(NPM_STAMP) system
	$(PY) -m pytest --cov --cov-report=term

# The docs site (mkdocs.yml): `make docs` builds it into site/. --strict turns a broken link,
# a missing anchor or an API reference that does not resolve into a failure.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

test: lint typecheck docs pytest

# The benchmarks also draw their plot (matplotlib), time a headless Chromium and run
# python-socketio under uvicorn on uvloop as the players-per-core baseline (the bench extra).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,plot,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) system
	$(PY) -m bench

bench-quick: $(BENCH_STAMP) system
	$(PY) -m bench --quick

# The soak (bench/soak/): a server in its own process, 500 WebSocket and 50 rtc clients for
# 90 s with abrupt disconnects and hostile clients; prints a table, writes
# bench/soak/results.json, fails if a check does. `make test` runs the short one
# (tests/integration/test_soak.py).
soak: $(STAMP)
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov site dist
