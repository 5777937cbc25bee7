# Task runner. Every target sets up what it needs itself, so each works alone on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CLI := $(VENV)/bin/consonance-sftp

.PHONY: setup demo test lint unit integration interop e2e bench lock docs clean system-deps

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

## The main job on the embedded default: SQLite, the local Consonance sandbox, local SFTP partners.
demo: setup
	$(CLI) demo

## System packages the real-server tests need (openssh-server, postgresql, clamav-daemon...), installed when missing.
system-deps:
	bash scripts/system-deps.sh

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## The whole suite: linters, unit, integration (real sshd, PostgreSQL, sandbox over HTTP), e2e.
## Two workers (TEST_WORKERS=0 for one process), each taking whole test files, each with its
## own servers: much of the suite waits on servers, retries and subprocesses, not the CPU.
TEST_WORKERS ?= 2
test: setup system-deps lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

unit: setup
	$(PY) -m pytest -q tests/unit

integration: setup system-deps
	$(PY) -m pytest -q tests/integration

## SFTP servers partners run (ProFTPD, rclone, paramiko), FTPS to ProFTPD; INTEROP_SIZE=1024 for 1 GiB files.
INTEROP_SIZE ?= 128
interop: setup system-deps
	$(PY) -m pytest -q tests/interop --interop-size $(INTEROP_SIZE)

## Benchmarks print ratios against a peer measured in the same run (see bench/README.md).
bench: setup system-deps
	$(PY) bench/transfer.py
	$(PY) bench/onix.py
	$(PY) bench/consonance_poll.py
	$(PY) bench/engine.py

## Regenerate the lock file after changing dependencies in pyproject.toml.
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

docs: setup
	$(CLI) docs config-reference > docs/reference/config.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
