# The worker: `garage worker run` on a rig, next to its Ollama or vLLM server. It needs
# GARAGE_WORKER_BROKER and GARAGE_WORKER_TOKEN; see rig.compose.yaml.
#   docker build -f docker/worker.Dockerfile -t garage-worker:0.1.0 .
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/garage
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY client ./client
COPY cli ./cli
COPY broker ./broker
COPY worker ./worker
RUN /opt/garage/bin/pip install ".[worker]"

FROM python:3.11.13-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/garage --create-home \
        --shell /usr/sbin/nologin garage
COPY --from=build /opt/garage /opt/garage
# NVML (libnvidia-ml, mounted by the NVIDIA container toolkit) is all the worker uses of
# the GPU: it reads health, the inference server next to it does the compute.
ENV PATH=/opt/garage/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=utility
USER 10001:10001
WORKDIR /var/lib/garage
# SIGTERM drains (no new work, running jobs get GARAGE_WORKER_DRAIN_GRACE_S, 30 s by
# default, then are handed back): give the container a longer stop timeout than that.
STOPSIGNAL SIGTERM
# The worker serves no port and writes no heartbeat, and a worker key may not read the
# fleet (/v1/workers needs a user key), so nothing outside the process can vouch for it.
# This only checks that PID 1 is still `garage worker run`; the real liveness signal is
# the broker's fleet view (`garage workers`), which drops a worker that stops polling.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys; sys.exit(b'worker\\x00run' not in open('/proc/1/cmdline', 'rb').read())"]
ENTRYPOINT ["garage"]
CMD ["worker", "run"]
