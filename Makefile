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

PY_SOURCES := libs services tools testing tests bench conftest.py scripts

ZABBIX_DEV := deploy/zabbix/dev/zabbix-dev
# The tests use both; `make run-zabbix` runs one: $ZABBIX_VERSION, else 7.0.
ZABBIX_TEST_VERSIONS := 6.0 7.0

.PHONY: help setup system-deps system-deps-run venv zabbix-install zabbix-up lint fmt test \
	test-unit test-under-load run run-zabbix screenshots bench chaos chaos-cluster-short media-type images compose-test clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(UV): | system-deps-run
	python3 -m venv $(BOOT)
	$(BOOT)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

system-deps: ## install the Debian packages the tests need (idempotent; apt only when something is missing)
	scripts/install-system-deps

system-deps-run:
	scripts/install-system-deps run

venv: $(UV) ## create .venv with every workspace package and dev tool from uv.lock
	$(UV) sync --all-packages --locked

zabbix-install: venv ## install Zabbix 6.0 (bookworm packages) and 7.0 (cached trixie chroot)
	$(ZABBIX_DEV) install $(ZABBIX_TEST_VERSIONS)

zabbix-up: zabbix-install ## bring up (or verify) the local Zabbix 6.0 and 7.0 on loopback
	$(ZABBIX_DEV) up $(ZABBIX_TEST_VERSIONS)

setup: system-deps venv zabbix-install ## everything `make test` and `make run` need

lint: venv ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy $(PY_SOURCES)

fmt: venv ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix $(PY_SOURCES)
	$(VENV)/bin/ruff format $(PY_SOURCES)

# Three workers on two cores: the tests mostly wait (see conftest.py for what runs serially).
PARALLEL ?= -n 3 --dist loadgroup

test: setup lint zabbix-up ## set up, lint, then run every test against real NATS, Zabbix and the simulator (the images: make compose-test)
	$(VENV)/bin/pytest -m "not containers" $(PARALLEL)

test-under-load: ## `make test` three times in a row (RUNS=n) while stress-ng keeps every core busy
	scripts/test-under-load

# CHAOS_CLUSTER=1: on a 3-node JetStream cluster with two replicas of each service.
CHAOS_CLUSTER ?= 0

chaos: setup zabbix-up ## 1,000 problems through a stack that keeps being broken, then the audit (CHAOS_* to change; CHAOS_CLUSTER=1 for the cluster)
	CHAOS_CLUSTER=$(CHAOS_CLUSTER) CHAOS_PROBLEMS=$${CHAOS_PROBLEMS:-1000} \
		CHAOS_ZABBIX_OUTAGE=$${CHAOS_ZABBIX_OUTAGE:-60} \
		$(VENV)/bin/pytest tests/chaos -s -p no:cacheprovider

# CI's short cluster pass: every cluster fault once, with short freezes (no apt: CI ran
# `make test` first, which set everything up).
chaos-cluster-short: venv zabbix-up ## a short chaos pass on the 3-node cluster (60 problems, shortened faults)
	CHAOS_CLUSTER=1 CHAOS_PROBLEMS=60 CHAOS_LONG_FREEZE=20 CHAOS_SHORT_FREEZE=8 \
		CHAOS_ZONE_DOWN=5 CHAOS_ZABBIX_OUTAGE=10 \
		$(VENV)/bin/pytest tests/chaos -s -p no:cacheprovider

bench: setup zabbix-up ## every benchmark, each figure printed beside its target (bench/README.md)
	$(VENV)/bin/python -m bench.run_all

run: venv ## the whole stack on this machine with the Twilio simulator and a web phone (Ctrl-C stops it)
	$(VENV)/bin/yobidashi-devstack

run-zabbix: venv ## `make run`, plus a local real Zabbix wired to ingest (ZABBIX_VERSION=6.0 for 6.0)
	$(ZABBIX_DEV) install
	$(VENV)/bin/yobidashi-devstack --with-zabbix

screenshots: setup zabbix-up ## regenerate docs/images/*.png (the web phone, the dashboard preview)
	YOBIDASHI_UPDATE_SCREENSHOTS=1 $(VENV)/bin/pytest -p no:cacheprovider \
		tests/e2e/test_web_phone.py tests/integration/test_dashboard_queries.py

test-unit: venv ## only the fast tests that need nothing running
	$(VENV)/bin/pytest -m "not integration and not zabbix and not e2e and not chaos and not containers"

# Podman's settings for this kind of machine (runc, cgroupfs, ulimits, netavark); a Docker
# engine, where one answers, ignores them.
images compose-test: export CONTAINERS_CONF ?= $(CURDIR)/testing/fixtures/src/yobidashi_testing/images/containers.conf

images: venv ## build every image: docker where an engine answers, else podman (installed), with local stand-in bases where no registry serves them
	@docker info >/dev/null 2>&1 || scripts/install-system-deps images
	$(VENV)/bin/python -m yobidashi_testing.images

compose-test: images ## bring up the compose stack from the images, check it end to end, take it down
	$(VENV)/bin/pytest -m containers -p no:cacheprovider tests/deploy/test_compose_stack.py

media-type: venv ## rebuild deploy/zabbix/yobidashi/media_yobidashi.yaml from its JavaScript
	$(VENV)/bin/python deploy/zabbix/yobidashi/build_media_type.py

clean: ## stop the local Zabbix instances, remove the environment and local run data
	-[ -x $(VENV)/bin/python ] && $(ZABBIX_DEV) purge $(ZABBIX_TEST_VERSIONS)
	rm -rf --one-file-system $(VENV) $(BOOT) .run .pytest_cache .mypy_cache .ruff_cache
