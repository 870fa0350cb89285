# syntax=docker/dockerfile:1
# The rhesis-pipeline image: one image, every role (worker, scheduler, dashboard, migrate,
# health, probe) chosen by the first argument of the entry point (bin/entrypoint).
#   docker build -t rhesis-pipeline:dev .
#   docker run --rm -e DATABASE_URL=postgresql://... rhesis-pipeline:dev migrate
# Rules (checked by tests/test_image.py): multi-stage, the final stage installs the wheel
# without build tools, a non-root numeric user, tini as PID 1 so that SIGTERM reaches
# dramatiq, exec-form ENTRYPOINT/CMD, no secrets, no ADD of URLs. See
# docs/deployment/image.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: the wheels of the package and of every run-time dependency --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rhesis_pipeline ./rhesis_pipeline
COPY migrations ./migrations
COPY examples ./examples
RUN pip wheel --wheel-dir /wheels ".[dashboard,otel]"

# ---- runtime: the wheels installed, no compilers, no pip cache, not root ---------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="rhesis-pipeline" \
      org.opencontainers.image.description="Test suites run in parallel on Dramatiq workers with a Postgres-only broker" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"
# tini (PID 1) forwards SIGTERM to the role's process and reaps zombies.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rhesis \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/rhesis --create-home \
       --shell /usr/sbin/nologin rhesis
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RHESIS_RUN_DIR=/tmp/rhesis \
    RHESIS_DATA_DIR=/home/rhesis/data
# The wheels come from the builder through a bind mount: no copy of them stays in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "rhesis-pipeline[dashboard,otel]"
COPY --chmod=0755 bin/entrypoint /usr/local/bin/rhesis-entrypoint
USER 10001:10001
WORKDIR /home/rhesis
EXPOSE 8080
# Kubernetes probes the pods (deploy/kubernetes); Docker's own health check is not used.
HEALTHCHECK NONE
ENTRYPOINT ["tini", "--", "rhesis-entrypoint"]
CMD ["worker"]
