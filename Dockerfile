# One image for every Tenure service: `tenure serve <service>`, `tenure migrate`, `tenure topics`.
#
#   docker build -t tenure:dev .
#   docker run --rm -p 8001:8001 tenure:dev                      # serve ingest (the default)
#   docker run --rm -p 8002:8002 tenure:dev serve segmenter
#
# Both stages must use the same Python: the virtualenv built in the first is
# copied as is into the second, at the same path.
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------
# builder: resolve the locked runtime dependencies into /app/.venv
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install uv==0.13.9

WORKDIR /app

# Dependencies first, so that this layer is reused until the lock file changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself. --no-editable installs it into the venv as a wheel
# (code, Alembic migrations and all), so the runtime stage needs only the venv.
# --reinstall-package rebuilds that wheel every time: uv keys its cached build
# of a local project on pyproject.toml only, so the cache mount would otherwise
# hand back a wheel of older sources.
COPY shared ./shared
COPY services ./services
COPY tenure ./tenure
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --reinstall-package tenure

# ---------------------------------------------------------------------------
# runtime: the venv, a non-root user, nothing else
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="Tenure" \
      org.opencontainers.image.description="Open retention-campaign platform: ingest, segments, journeys, messaging, metrics on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 tenure \
 && useradd --system --uid 10001 --gid tenure --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin tenure

WORKDIR /app

# Owned by root and read-only for the service user.
COPY --from=builder /app/.venv /app/.venv

ENV PATH="/app/.venv/bin:${PATH}" \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TENURE_HTTP_HOST=0.0.0.0

USER 10001:10001

# ingest, segmenter, journey, dispatcher, metrics
EXPOSE 8001 8002 8003 8004 8005

# Exec form: tenure is PID 1 and receives SIGTERM directly (graceful shutdown).
ENTRYPOINT ["tenure"]
CMD ["serve", "ingest"]
