# walg: the two commands a newcomer needs are `make demo` and `make test` (see README.md).
# Works on a fresh Debian 12 machine: `deps` installs the system packages, `.venv` the
# Python ones. Both are quick no-ops when everything is already there.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Debian's interpreter, not a pyenv/conda one from someone's home directory: the postgres
# OS user must be able to run the venv's python (archive_command = 'wal-g wal-push %p').
PYTHON := /usr/bin/python3
VENV := .venv
STAMP := $(VENV)/.installed
PG_BIN := /usr/lib/postgresql/15/bin
APT_PACKAGES := postgresql gnupg python3-venv python3-dev make lz4 xz-utils brotli
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps $(VENV) test lint typecheck unit demo clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

deps:  ## install the Debian packages walg needs (PostgreSQL 15, gpg, python3-venv)
	@missing=(); \
	[ -x $(PG_BIN)/postgres ] || missing+=(postgresql); \
	command -v gpg >/dev/null || missing+=(gnupg); \
	[ -x $(PYTHON) ] && dpkg -s python3-venv >/dev/null 2>&1 || missing+=(python3-venv); \
	dpkg -s python3-dev >/dev/null 2>&1 || missing+=(python3-dev); \
	command -v make >/dev/null || missing+=(make); \
	for tool in lz4 xz brotli; do command -v $$tool >/dev/null || missing+=($$tool); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
		echo "deps: missing $${missing[*]}; installing $(APT_PACKAGES)"; \
		$(SUDO) apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	fi

$(VENV): $(STAMP)  ## create .venv with Debian's python3 and install walg with its test tools

# Re-run pip when the dependencies change. A venv made by another interpreter is rebuilt.
$(STAMP): setup.cfg pyproject.toml | deps
	@if [ -e $(VENV)/bin/python ] && \
		[ "$$(readlink -f $(VENV)/bin/python)" != "$$(readlink -f $(PYTHON))" ]; then \
		echo "$(VENV) was not made by $(PYTHON); recreating it"; rm -rf $(VENV); \
	fi
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	@# compat: a plain path entry in a .pth file; the default editable finder costs every
	@# wal-g call ~10 ms of imports (pathlib, re, urllib) at interpreter start.
	$(VENV)/bin/pip install --config-settings editable_mode=compat -e '.[test]'
	touch $@

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check walg tests bench

typecheck: $(STAMP)  ## mypy (configured in setup.cfg)
	$(VENV)/bin/mypy

# Test processes (pytest-xdist). Every test makes its own clusters, ports, servers and
# folders, so two run side by side; the suite took 829 s in one process, 483 s in two (2 cores).
TEST_JOBS ?= 2

unit: $(STAMP)  ## pytest (configured in setup.cfg), TEST_JOBS processes
	$(VENV)/bin/pytest -n $(TEST_JOBS)

test: deps $(STAMP)  ## everything CI runs: ruff, mypy, pytest
	$(VENV)/bin/ruff check walg tests bench
	$(VENV)/bin/mypy
	@# Byte-compile now: archive_command runs wal-g as the postgres user, who cannot write
	@# __pycache__ here, and would otherwise recompile walg on every WAL segment.
	$(VENV)/bin/python -m compileall -q walg
	$(VENV)/bin/pytest -n $(TEST_JOBS)

demo: deps $(STAMP)  ## back up a throwaway PostgreSQL cluster and restore it
	$(VENV)/bin/python -m compileall -q walg
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo.sh

clean:  ## remove the venv and caches
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache walg.egg-info
