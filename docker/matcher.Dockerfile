# syntax=docker/dockerfile:1
# The cross-camera matcher: ZeroMQ ingest, Redis state, association and the HTTP query API. The same image, run with
# `--api-only`, is the identity browser and the API replicas (docs/deployment.md says why one image).
#
#   docker build -f docker/matcher.Dockerfile -t keyreid-stream/matcher:0.1.0 .     (from the repository root)
#   docker run -p 5555:5555 -p 8080:8080 keyreid-stream/matcher:0.1.0 --redis redis://REDIS_HOST:6379/0 \
#       --listen 'tcp://*:5555' --http :8080 --token-file /run/secrets/api_token
#
# Build arguments: PYTHON_IMAGE (the base; pin it to a digest, python:3.11-slim-bookworm@sha256:..., for
# byte-for-byte rebuilds); EXTRAS (default "matcher"; "matcher,stream" adds the re-ID model for search by image
# crop, search.arch: torch and CUDA, a much larger image).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=matcher
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/keyreid
WORKDIR /src
# The dependencies first, pinned by constraints.txt, in a layer that survives changes of the source ...
COPY pyproject.toml constraints.txt README.md ./
COPY docker/requirements.py docker/requirements.py
RUN python docker/requirements.py "$EXTRAS" > requirements.txt \
    && /opt/keyreid/bin/pip install -c constraints.txt -r requirements.txt
# ... then the package itself.
COPY keyreid_stream ./keyreid_stream
RUN /opt/keyreid/bin/pip install --no-deps -c constraints.txt . \
    && /opt/keyreid/bin/pip check

FROM ${PYTHON_IMAGE}
# opencv-python (image decoding for search) loads libGL and GLib from the system; nothing else is needed beyond
# the slim base (checked with ldd on every dynamic library of the installed packages).
# Unpinned Debian packages: bookworm's security updates come in with a rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 keyreid \
    && useradd --system --uid 10001 --gid keyreid --create-home --home-dir /home/keyreid \
        --shell /usr/sbin/nologin keyreid
COPY --from=build /opt/keyreid /opt/keyreid
COPY configs/matcher.yaml configs/topology.example.yaml /etc/keyreid/
ENV PATH=/opt/keyreid/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    KEYREID_HEALTH_URL=http://127.0.0.1:8080/health
USER 10001:10001
WORKDIR /home/keyreid
# 5555: ZeroMQ ingest (the workers' DEALER sockets connect here); 8080: the HTTP query API and the browser.
EXPOSE 5555 8080
# /health answers 200 when Redis answers and the service is healthy, 503 while degraded (e.g. the vector index
# still loading after a start: about 160 s at a million tracklets, hence the start period). No curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['KEYREID_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["keyreid-stream", "matcher"]
CMD ["--listen", "tcp://*:5555", "--http", ":8080"]
