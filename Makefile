# Yobidashi: `make run` starts the whole stack locally, `make test` sets up and runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
BOOT := .tools/bootstrap
UV := $(BOOT)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

PY_SOURCES := libs services tools tests bench

.PHONY: help setup system-deps venv lint fmt test test-unit run bench chaos clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(BOOT)
	$(BOOT)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

system-deps: ## install the Debian packages the tests need (idempotent; apt only when something is missing)
	scripts/install-system-deps

venv: $(UV) ## create .venv with every workspace package and dev tool from uv.lock
	$(UV) sync --all-packages --locked

setup: system-deps venv ## everything `make test` and `make run` need

lint: venv ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy $(PY_SOURCES)

fmt: venv ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix $(PY_SOURCES)
	$(VENV)/bin/ruff format $(PY_SOURCES)

test: setup lint ## set up, lint, then run every test against real nats-server, Zabbix and the Twilio simulator
	$(VENV)/bin/pytest

test-unit: venv ## only the fast tests that need nothing running
	$(VENV)/bin/pytest -m "not integration and not zabbix and not e2e and not chaos"

clean: ## remove the environment and local run data
	rm -rf $(VENV) $(BOOT) .run .pytest_cache .mypy_cache .ruff_cache
