# The broker: `garage broker run` on port 8080, its state in Redis
# (GARAGE_BROKER_REDIS_URL; without it, an embedded redis-server in /var/lib/garage/broker).
# The same image runs the admin commands: docker run --rm garage-broker:0.1.0 admin key create ...
#   docker build -f docker/broker.Dockerfile -t garage-broker:0.1.0 .
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
RUN /opt/garage/bin/pip install ".[broker]"

FROM python:3.11.13-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/garage --create-home \
        --shell /usr/sbin/nologin garage
COPY --from=build /opt/garage /opt/garage
ENV PATH=/opt/garage/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GARAGE_BROKER_HOST=0.0.0.0 \
    GARAGE_BROKER_PORT=8080 \
    GARAGE_BROKER_DATA_DIR=/var/lib/garage/broker
USER 10001:10001
WORKDIR /var/lib/garage
EXPOSE 8080
# Liveness only: /readyz (Redis and pub/sub) is for the load balancer, so a Redis outage
# does not get every replica marked unhealthy and restarted at once.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GARAGE_BROKER_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["garage"]
CMD ["broker", "run"]
