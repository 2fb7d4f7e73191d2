# syntax=docker/dockerfile:1
# The driftstream image: one image for every role (worker, lag monitor, simulator, CLI).
#   docker build -t driftstream .
#   docker run --rm -e DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 \
#     -e DRIFTSTREAM_APP__WEB_HOST=0.0.0.0 -p 6066:6066 driftstream worker
# Checked statically by tests/test_deploy.py (every COPY source exists); not built in CI,
# which has no Docker engine. See deploy/README.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package from the repository files (not editable: the sources are removed).
WORKDIR /build
COPY pyproject.toml README.md ./
COPY stream/ stream/
COPY schemas/ schemas/
RUN pip install . && rm -rf /build

# Run as an unprivileged user; Faust keeps its local table files under the home directory
# (mount a volume there to keep them across restarts; they are rebuilt from the changelog
# topics otherwise).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/driftstream \
        --shell /usr/sbin/nologin driftstream
USER driftstream
WORKDIR /var/lib/driftstream
ENV DRIFTSTREAM_APP__DATA_DIR=/var/lib/driftstream/data

# The worker's /metrics (app.web_port). The worker binds app.web_host, 127.0.0.1 by default:
# set DRIFTSTREAM_APP__WEB_HOST=0.0.0.0 to reach it from outside the container.
EXPOSE 6066

# Healthy when the worker answers on /metrics. Other roles (lag --watch on 6067, simulate)
# override or disable it in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/metrics', timeout=4).read()"]

ENTRYPOINT ["driftstream"]
CMD ["worker"]
