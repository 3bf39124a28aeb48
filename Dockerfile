# syntax=docker/dockerfile:1
# Multi-stage image for nas-surrogate: one image for every role of the production stack (API,
# Celery workers, beat, migrations; see docker-compose.yml). The builder installs the
# dependencies into a virtual environment (their own layer, so a code change does not
# reinstall torch), then the package itself; the runtime stage copies only that environment,
# alembic.ini and migrations/, and runs as a non-root user.
#
# torch comes from PyPI: on linux/amd64 that wheel carries CUDA, so the same image serves the
# GPU worker (with the NVIDIA container toolkit) and runs on CPU everywhere else.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies first (the slow, rarely changing layer), read from pyproject.toml.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY ml ./ml
COPY service ./service
COPY app ./app
COPY worker ./worker
COPY nas_surrogate ./nas_surrogate
# The light client's package (client/nas_surrogate_client) ships in the service too: app.client
# re-exports it.
COPY client ./client
RUN pip install --no-deps .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SURROGATE_DATA_DIR=/var/lib/nas-surrogate
RUN useradd --create-home --uid 10001 surrogate \
    && mkdir -p /var/lib/nas-surrogate \
    && chown surrogate:surrogate /var/lib/nas-surrogate
COPY --from=builder /opt/venv /opt/venv
# Migrations run from here: `alembic upgrade head` reads ./alembic.ini, whose script_location
# is ./migrations; the database URL comes from SURROGATE_DATABASE_URL (migrations/env.py).
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
USER surrogate
# Datasets, model bundles and checkpoints: a volume shared by the API and the workers. A named
# volume mounted here starts out owned by the non-root user (the directory above).
VOLUME ["/var/lib/nas-surrogate"]
EXPOSE 8000
# The API. Workers, beat and migrations override the command (docker-compose.yml). One uvicorn
# worker by default; each one holds its own copy of the active model and encoding cache.
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
