# syntax=docker/dockerfile:1.7
# Every Yobidashi image, one workspace package each. Build from the repository root:
#   docker build --build-arg PACKAGE=yobidashi-ingest --build-arg PORT=8000 -t yobidashi-ingest .
# docker-compose.yml holds each image's arguments, and `make images` builds them all.
#
#   PACKAGE          the workspace package to install (required)
#   COMMAND          its console script the container runs (default: PACKAGE)
#   PORT             the HTTP port it serves on (required): its health endpoint is there
#   SETTINGS_PREFIX  the prefix of its HOST and PORT variables (empty for the services, which
#                    read HOST and PORT; TWILIO_SIM_, ZABBIX_STANDIN_ or HEARTBEAT_ for the others)
#   HEALTH_PATH      what the image's healthcheck asks for (default /healthz)
ARG PACKAGE
ARG COMMAND=${PACKAGE}
ARG PORT
ARG SETTINGS_PREFIX=
ARG HEALTH_PATH=/healthz

# --- build: resolve from the workspace lockfile into a self-contained venv ------------------
FROM python:3.11-slim-bookworm AS build
ARG PACKAGE
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first (cached until uv.lock changes); uv needs every member's pyproject.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY testing/harness/pyproject.toml testing/harness/
COPY testing/fixtures/pyproject.toml testing/fixtures/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/dialer/pyproject.toml services/dialer/
COPY services/acker/pyproject.toml services/acker/
COPY tools/twilio-sim/pyproject.toml tools/twilio-sim/
COPY tools/cli/pyproject.toml tools/cli/
COPY tools/devstack/pyproject.toml tools/devstack/
COPY tools/zabbix-standin/pyproject.toml tools/zabbix-standin/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace --package ${PACKAGE}
# Every member's sources: uv installs only PACKAGE and what it depends on, and only the venv
# reaches the image. (.dockerignore keeps the tests out, so editing one rebuilds nothing.)
COPY libs libs
COPY services services
COPY tools tools
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package ${PACKAGE}

# --- run: slim, non-root, read-only friendly -------------------------------------------------
FROM python:3.11-slim-bookworm
ARG COMMAND
ARG PORT
ARG SETTINGS_PREFIX
ARG HEALTH_PATH
RUN groupadd --system --gid 10001 yobidashi \
    && useradd --system --uid 10001 --gid yobidashi --no-create-home --shell /usr/sbin/nologin yobidashi
COPY --from=build /app/.venv /app/.venv
# One entrypoint path for every image; the build fails here if COMMAND is not in the package.
RUN test -n "${PORT}" \
    && test -x "/app/.venv/bin/${COMMAND}" \
    && ln -s "/app/.venv/bin/${COMMAND}" /app/entrypoint
# In a container every server listens on all interfaces (the simulator's default is loopback).
# The healthcheck reads the port from the variable the server itself reads, so a port changed
# at run time is still the one checked.
ENV PATH=/app/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ${SETTINGS_PREFIX}HOST=0.0.0.0 ${SETTINGS_PREFIX}PORT=${PORT} \
    YOBIDASHI_PORT_VARIABLE=${SETTINGS_PREFIX}PORT YOBIDASHI_HEALTH_PATH=${HEALTH_PATH}
USER 10001:10001
EXPOSE ${PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; e = os.environ; urllib.request.urlopen('http://127.0.0.1:%s%s' % (e[e['YOBIDASHI_PORT_VARIABLE']], e['YOBIDASHI_HEALTH_PATH']), timeout=2)"]
ENTRYPOINT ["/app/entrypoint"]
