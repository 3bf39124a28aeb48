# syntax=docker/dockerfile:1
# Multi-stage image for nas-surrogate. The builder resolves and installs dependencies into a
# virtual environment; the runtime stage copies only that environment and runs as a non-root user.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ml ./ml
COPY app ./app
COPY worker ./worker
RUN pip install .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 10001 surrogate
COPY --from=builder /opt/venv /opt/venv
WORKDIR /home/surrogate
USER surrogate
# Genome files and data are mounted at /data (see docker-compose.yml).
ENTRYPOINT ["nas-surrogate"]
CMD ["--help"]
