# syntax=docker/dockerfile:1
# watcher in a container (see docs/operations.md):
#   docker build -t watcher .
#   docker run -d --name watcher -v watcher-data:/data \
#     -v "$PWD/config.toml:/etc/watcher/config.toml:ro" -p 127.0.0.1:8787:8787 watcher
# Both stages use the same base, so the virtualenv copied across finds the same interpreter.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtualenv holding watcher and its dependencies ----------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/watcher
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watcher ./watcher
# Every dependency ships wheels for linux x86_64 and aarch64; on a platform without one, install
# build-essential here (in the builder only, never in the final image).
RUN /opt/watcher/bin/pip install . \
 && /opt/watcher/bin/watcher --version

# --- final: the slim base, the virtualenv, a non-root user; no compiler, no pip cache -------------
FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin watcher \
 && mkdir -p /data /etc/watcher \
 && chown watcher:watcher /data
COPY --from=builder /opt/watcher /opt/watcher
# A start-up config with every source disabled; mount your own over it.
COPY config.example.toml /etc/watcher/config.toml
ENV PATH=/opt/watcher/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WATCHER_WATCHER__DATA_DIR=/data \
    WATCHER_SERVER__LISTEN=0.0.0.0:8787
VOLUME ["/data"]
EXPOSE 8787
USER watcher
WORKDIR /data
# SIGTERM: passes and deliveries in flight finish, then exit 0 (give it time: docker stop -t 30).
STOPSIGNAL SIGTERM
# Healthy while /healthz answers 200 (scheduler alive, store writable): python, no curl needed;
# no proxy either, even when HTTP_PROXY is set for the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8787/healthz', timeout=4)"]
ENTRYPOINT ["watcher", "--config", "/etc/watcher/config.toml"]
CMD ["run"]
