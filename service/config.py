"""The one settings object, read from ``SURROGATE_*`` environment variables (and ``.env``).

The API, the Celery workers, Alembic and the embedded ``serve`` command all read this object,
so a deployment is configured in one place. Defaults are the embedded mode: SQLite under
``data_dir``, jobs on an in-process thread, no broker.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SEED_CSV_NAME = "surrogate_evolution_train.csv"
#: The schema's hard cap on genomes per request (``max_batch`` may only lower it): a list longer
#: than this is refused while the body is validated, before any genome is looked at.
MAX_BATCH_CEILING = 10_000


def _default_seed_csv() -> Path | None:
    """The real evaluated genomes: $NAS_SURROGATE_DATA_DIR, else ../shared/data beside the repo."""
    repo = Path(__file__).resolve().parents[2]
    if "NAS_SURROGATE_DATA_DIR" in os.environ:
        candidates = [Path(os.environ["NAS_SURROGATE_DATA_DIR"])]
    else:
        candidates = [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for folder in candidates:
        if (folder / SEED_CSV_NAME).is_file():
            return (folder / SEED_CSV_NAME).resolve()
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SURROGATE_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    #: Holds the SQLite database (embedded mode), datasets, model bundles, checkpoints, admin.key.
    data_dir: Path = Path("var")
    #: SQLAlchemy URL; empty means ``sqlite:///<data_dir>/surrogate.db``.
    database_url: str = ""
    #: PostgreSQL connection pool per process; a request that waits longer than the timeout for
    #: a connection answers 503 DATABASE_UNAVAILABLE.
    db_pool_size: int = 10
    db_max_overflow: int = 20
    db_pool_timeout_s: float = 5.0
    #: ``thread``: jobs run in the API process (embedded); ``celery``: sent to the broker.
    executor: Literal["thread", "celery"] = "thread"
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: The CSV the embedded mode trains its first model from (the real evaluated genomes).
    seed_csv: Path | None = Field(default_factory=_default_seed_csv)
    #: Server-side dataset paths (``POST /datasets`` with ``path``) must lie under one of these
    #: explicit roots; none by default. ``data_dir`` (database, bundles, ``admin.key``) is never
    #: reachable, even when a root contains it.
    dataset_roots: list[Path] = Field(default_factory=list)

    # Model registry
    model_name: str = "default"
    default_predictor: str = "auto"

    # Request limits (checked before any encoding)
    max_batch: int = Field(5000, ge=1, le=MAX_BATCH_CEILING)
    max_genome_length: int = 20_000
    max_body_bytes: int = 32 * 2**20
    #: /genomes/encode with ``full=true`` (node tensors in the answer) takes at most this many.
    max_encode_full: int = 50
    #: Work one request may cause: graph nodes encoded (cache misses; a genome has 3 to ~14,000)
    #: and wall time. Past either the request answers 413 REQUEST_TOO_LARGE / 503
    #: DEADLINE_EXCEEDED; what was encoded stays cached. 0 turns a bound off.
    max_request_nodes: int = 10_000_000
    request_deadline_s: float = 60.0
    #: Heavy routes (/predict, /genomes/encode) run at most this many at once per API process;
    #: up to ``heavy_queue`` more wait (in the event loop, not in threads) for at most
    #: ``heavy_queue_timeout_s``; the rest answer 503 SERVER_BUSY with Retry-After.
    heavy_concurrency: int = Field(2, ge=1)
    heavy_queue: int = Field(8, ge=0)
    heavy_queue_timeout_s: float = 30.0
    #: Encoding cache budgets (MB, LRU): genome text → hash; graph records (~0.27 MB each, kept
    #: only for graph-reading predictors); per-genome feature rows of row-based predictors
    #: (~9 KB each).
    text_cache_mb: int = 64
    encoding_cache_mb: int = 256
    feature_cache_mb: int = 256
    #: Build every backbone variant in the background at start-up (~20 s of one core) so the
    #: first batches do not pay per-variant cold costs.
    warm_up: bool = True
    #: A batch is encoded, featurised and predicted in chunks of at most this many genomes or
    #: this many MB of graph records, then the chunk's graphs are dropped.
    predict_chunk: int = 512
    predict_chunk_mb: int = 64
    #: Never-seen genomes of a batch for a row-based predictor (stack, trees, gbt) are parsed,
    #: compiled, encoded and featurised in this many worker processes (0: in the API
    #: process), forked from one fork server that built the backbones: the server ~0.4 GB,
    #: each worker ~0.25 GB more (PSS; spawned workers that built their own were ~0.7 GB each,
    #: docs/results.md), so the default fits in 1 GB; it pays from 2 cores. A batch with fewer
    #: misses than ``encoder_pool_min_misses`` is encoded in process (no round trip).
    encoder_processes: int = Field(2, ge=0, le=64)
    encoder_pool_min_misses: int = Field(64, ge=1)
    #: A model version that fails to load is retried after this, doubling up to 5 minutes; the
    #: loaded model keeps serving meanwhile.
    model_load_backoff_s: float = 5.0
    #: Model bundles one API process keeps loaded (LRU over every name and version it serves).
    max_loaded_models: int = Field(3, ge=1)

    # Search (POST /propose)
    #: A proposal scoring at most this many candidates (pool_size x inner_generations for ssi,
    #: pool_size otherwise, plus the population) runs in the request, under
    #: ``propose_deadline_s``; a larger one is queued as a ``propose`` job (202).
    propose_sync_max_candidates: int = Field(12_000, ge=0)
    propose_deadline_s: float = 120.0
    #: Hard caps of one proposal's body.
    max_pool_size: int = Field(100_000, ge=1)
    max_inner_generations: int = Field(50, ge=1)
    max_exclude: int = Field(50_000, ge=0)
    #: The most genomes one proposal may score (``planned_candidates``: pool_size x
    #: inner_generations for ssi, plus the population); more is 413 REQUEST_TOO_LARGE. The
    #: body caps alone allow 5,000,020 (~2.5 h of one job thread).
    max_propose_candidates: int = Field(250_000, ge=1)

    # Access
    #: Failed authentications per client address, and per failing credential, per minute
    #: before failures answer 429 (0: no limit); a key that authenticates is never refused.
    auth_failures_per_minute: int = 20
    #: Proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` name the client (addresses or
    #: networks, comma-separated, uvicorn's ``forwarded_allow_ips`` syntax; "*" trusts any
    #: peer). Empty (the default): the TCP peer is the client, whatever the headers say.
    trusted_proxies: str = ""
    #: Requests per API key per minute before 429 (0: no limit).
    rate_limit_per_key: int = 0
    #: ``/metrics``: ``public``, ``admin`` (an admin key in X-API-Key or ``Authorization: Bearer``)
    #: or ``off``. Empty: public, except ``admin`` in production.
    metrics_access: Literal["", "public", "admin", "off"] = ""
    #: Log an access line for the probes (/healthz, /readyz, /metrics) too; off, they are polled
    #: every second or two and buried the lines that matter (service.logs).
    access_log_probes: bool = False
    #: Serve /docs, /redoc and /openapi.json. None: on, except in production.
    docs_enabled: bool | None = None
    #: Serve the dashboard at /ui (pages for people; the API stays the contract for tools).
    ui_enabled: bool = True

    #: Champion/challenger (``promote: if_better``): how many of the last generations of the
    #: champion's data are held out, one at a time, to score each side.
    promote_generations: int = Field(5, ge=1, le=100)
    #: What the measured rule of ``promote: if_better`` decides (``SURROGATE_PROMOTION_POLICY``):
    #: ``auto``: a challenger measured better becomes active; ``approve``: it is recommended and
    #: waits, not serving, until an admin approves it in the dashboard (the version page).
    promotion_policy: Literal["auto", "approve"] = "auto"

    # Jobs
    max_attempts: int = 3
    #: Jobs one API key may have queued or running at once (429 TOO_MANY_JOBS past it; 0: no
    #: limit), so that one key cannot stall every other key's jobs.
    max_jobs_per_key: int = Field(8, ge=0)
    job_lease_s: float = 60.0
    heartbeat_interval_s: float = 10.0
    progress_interval_s: float = 2.0
    #: A queued job that was dispatched is re-sent only when its message can really be lost:
    #: after this long (0 = the visibility timeout), never merely because it waits its turn.
    redispatch_after_s: float = 0.0
    reconcile_interval_s: float = 30.0
    train_soft_limit_s: int = 6 * 3600
    train_hard_limit_s: int = 6 * 3600 + 600
    build_soft_limit_s: int = 4 * 3600
    build_hard_limit_s: int = 4 * 3600 + 600
    #: Redis re-delivers an unacked task after this; 0 = hard limit + 2 h.
    visibility_timeout_s: int = 0
    dataset_workers: int = 1
    #: ``serve`` on SIGTERM: how long the running embedded job gets to stop and release itself
    #: (it resumes on the next start) before the process exits anyway.
    shutdown_grace_s: float = 10.0
    #: Sleep after each training epoch. Only for demos and crash tests that need a slow job.
    epoch_delay_s: float = 0.0
    #: Broker/DB probes in /readyz and job submission give up after this.
    probe_timeout_s: float = 1.0

    @model_validator(mode="after")
    def _fill_and_check(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'surrogate.db').resolve()}"
        if self.visibility_timeout_s <= 0:
            self.visibility_timeout_s = self.train_hard_limit_s + 7200
        if self.redispatch_after_s <= 0:
            self.redispatch_after_s = float(self.visibility_timeout_s)
        if not self.metrics_access:
            self.metrics_access = "admin" if self.environment == "production" else "public"
        if self.docs_enabled is None:
            self.docs_enabled = self.environment != "production"
        if self.visibility_timeout_s <= max(self.train_hard_limit_s, self.build_hard_limit_s) \
                and self.environment == "production":
            raise ValueError("visibility_timeout_s must exceed the hard time limits in production "
                             "(Redis would re-deliver running trainings)")
        if self.environment == "production" and self.database_url.startswith("sqlite"):
            raise ValueError("production needs SURROGATE_DATABASE_URL (PostgreSQL), not SQLite")
        if self.train_hard_limit_s <= self.train_soft_limit_s:
            raise ValueError("train_hard_limit_s must exceed train_soft_limit_s")
        return self

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def pretrained_dir(self) -> Path:
        """Embedders written by ``pretrain`` jobs (one folder per job and attempt)."""
        return self.data_dir / "pretrained"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and ``serve`` change the environment first)."""
    get_settings.cache_clear()
