# GraphFlow. Build: docker build -t graphflow .   Run: see docker-compose.yml.
# One image serves every role: graphflow serve (the default: API and worker in one process),
# graphflow api, graphflow worker and graphflow migrate. Run as a worker, override the
# HEALTHCHECK below with `graphflow health` (docker-compose.yml does).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system graphflow \
    && useradd --system --gid graphflow --home-dir /app --shell /usr/sbin/nologin graphflow

WORKDIR /src
# Exactly what pyproject.toml packages: the metadata, the packages and the py-module.
COPY pyproject.toml README.md ./
COPY graphflow.py ./
COPY graphflow_core/ graphflow_core/
COPY service/ service/
COPY workflows/ workflows/
RUN pip install . && rm -rf /src

WORKDIR /app
RUN chown graphflow:graphflow /app
USER graphflow

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

CMD ["graphflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
