# syntax=docker/dockerfile:1
# A camera worker for NVIDIA GPUs: video in, people detected, tracked and embedded with KeyRe-ID, tracklet
# descriptors out to the matcher over ZeroMQ.
#
#   docker build -f docker/worker-gpu.Dockerfile -t keyreid-stream/worker-gpu:0.1.0 .   (from the repository root)
#   docker run --gpus all -v "$PWD/configs:/etc/keyreid:ro" -v "$PWD/models:/models:ro" -v keyreid-cache:/cache \
#       keyreid-stream/worker-gpu:0.1.0 --config /etc/keyreid/worker.docker.yaml
#
# No CUDA base image: PyPI's torch 2.14.0 wheel (+cu130) depends on NVIDIA's CUDA 13.0 runtime, cuBLAS, cuDNN, NCCL
# ... as pip packages and finds them through its RPATH, so a slim Python base is enough. The host provides the
# driver (libcuda, injected by the NVIDIA Container Toolkit): docs/deployment.md lists what the host needs.
#
# Model weights are never baked in: re-ID checkpoints are mounted (read-only, /models); YOLO weights named like
# "yolo11n.pt" are downloaded by ultralytics on first use into the working directory, /cache/weights, and torch
# hub / Hugging Face downloads go to /cache too (XDG_CACHE_HOME): mount a volume at /cache to keep them.
#
# Build arguments: PYTHON_IMAGE (pin it to a digest for byte-for-byte rebuilds); EXTRAS (default "stream");
# WITH_PIFPAF=1 adds PifPaf, the paper's pose estimator, compiled against this torch in the build stage (a C++
# compiler there, a few minutes; the runtime stage gets only the built package).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=stream
ARG PIFPAF_EXTRA=pifpaf
ARG WITH_PIFPAF=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# hadolint ignore=DL3008
RUN if [ "$WITH_PIFPAF" = 1 ]; then \
        apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*; \
    fi
RUN python -m venv /opt/keyreid
WORKDIR /src
# The dependencies first (torch and the CUDA libraries: gigabytes), pinned by constraints.txt, in a layer that
# survives changes of the source ...
COPY pyproject.toml constraints.txt README.md ./
COPY docker/requirements.py docker/requirements.py
RUN extras="$EXTRAS"; if [ "$WITH_PIFPAF" = 1 ]; then extras="$extras,$PIFPAF_EXTRA"; fi \
    && python docker/requirements.py "$extras" > requirements.txt \
    && /opt/keyreid/bin/pip install -c constraints.txt -r requirements.txt
# ... then the package itself, and openpifpaf compiled against the installed torch (docs/install.md#pifpaf).
COPY keyreid_stream ./keyreid_stream
RUN /opt/keyreid/bin/pip install --no-deps -c constraints.txt . \
    && if [ "$WITH_PIFPAF" = 1 ]; then \
        KEYREID_STREAM_CACHE=/tmp/keyreid-build /opt/keyreid/bin/keyreid-stream keypoints install-pifpaf \
        && rm -rf /tmp/keyreid-build; \
    fi \
    && /opt/keyreid/bin/pip check

FROM ${PYTHON_IMAGE}
# OpenCV (video decoding, with its own bundled FFmpeg) loads libGL and GLib from the system; torch, its CUDA
# libraries and openpifpaf need nothing beyond the slim base (checked with ldd on every dynamic library).
# Unpinned Debian packages: bookworm's security updates come in with a rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 keyreid \
    && useradd --system --uid 10001 --gid keyreid --create-home --home-dir /home/keyreid \
        --shell /usr/sbin/nologin keyreid \
    && mkdir -p /cache/weights /models \
    && chown -R 10001:10001 /cache
COPY --from=build /opt/keyreid /opt/keyreid
COPY configs/worker.yaml configs/worker.docker.yaml /etc/keyreid/
ENV PATH=/opt/keyreid/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/cache YOLO_CONFIG_DIR=/cache/ultralytics MPLCONFIGDIR=/cache/matplotlib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /cache/weights
# No HEALTHCHECK: a worker serves no port. Its liveness is its heartbeats, which the matcher shows (GET /cameras).
ENTRYPOINT ["keyreid-stream", "worker"]
CMD ["--config", "/etc/keyreid/worker.docker.yaml"]
