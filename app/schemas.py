"""Request and response models (the OpenAPI contract). Datetimes are UTC ISO-8601."""
from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    field_validator,
    model_validator,
)

from ml.search.spec import ACQUISITIONS, DEFAULTS, K_DEFAULT_TEXT, STRATEGIES
from ml.train.pretrain_config import DEVICES, PretrainConfig
from service.config import MAX_BATCH_CEILING
from service.tables import INT32_MAX


def first_non_finite(value: Any, path: str = "") -> str | None:
    """Where the first NaN or ±Infinity in a JSON value is (``lr``, ``tree_weights[1]``,
    ``member_configs.gcn.lr``; ``""`` for the value itself), None when there is none. Python's
    JSON parser reads the ``NaN`` and ``Infinity`` literals and ``1e999`` as floats; no column
    and no learner can take them."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_non_finite(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = first_non_finite(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: Every datetime an answer carries: stored as UTC, written with its offset.
UTCDatetime = Annotated[datetime, AfterValidator(_as_utc)]
#: A model name (a directory name under the registry), and a reference to one of its versions:
#: ``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS``.
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MODEL_REF = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_.-]+)?$"
#: ``POST /jobs/pretrain``'s defaults are the library's (``ml.train.pretrain_config``).
_PRETRAIN = PretrainConfig()


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class GenomeErrorOut(BaseModel):
    code: str
    message: str
    offset: int | None = None


# -- prediction ----------------------------------------------------------------------------

class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no "0" -> false, "5" -> 5

    genomes: list[str] = Field(min_length=1, max_length=MAX_BATCH_CEILING,
                               description="genome strings, scored and ranked together "
                               "(at most SURROGATE_MAX_BATCH)")
    rank_by: str = Field("nsga2", description="'nsga2' (the evolution's objectives) or a metric")
    direction: Literal["min", "max"] | None = Field(
        None, description="for a metric: defaults to the metric's known direction")
    top_k: int | None = Field(None, ge=1, description="truncate `ranking` to the best k")
    model: str | None = Field(None, max_length=260,
                              pattern=MODEL_REF,
                              description="NAME, NAME@VERSION or NAME@ALIAS (default: the "
                              "configured name's active version)")


class PredictItem(BaseModel):
    index: int
    ok: bool
    error: GenomeErrorOut | None
    canonical_hash: str | None
    p_fail: float | None
    predictions: dict[str, float | None] | None
    std: dict[str, float | None] | None
    rank: int | None
    interval: dict[str, list[float | None]] | None = Field(
        None, description="95 % interval per metric, [lower, upper] in the metric's units, "
        "computed where the model works (standardised, log1p for heavy-tailed metrics) and "
        "mapped back; null when the model has none (ensembles of networks)")


class PredictResponse(BaseModel):
    items: list[PredictItem]
    ranking: list[int]
    model_name: str
    model_version: int
    encoder_version: str
    rank_by: str


class EncodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no "0" -> false, "5" -> 5

    genomes: list[str] = Field(min_length=1, max_length=MAX_BATCH_CEILING)
    full: bool = Field(False, description="include node-level tensors (ops, edges, shapes); "
                       "at most SURROGATE_MAX_ENCODE_FULL genomes")


class EncodeItem(BaseModel):
    index: int
    ok: bool
    error: GenomeErrorOut | None
    canonical_hash: str | None
    num_nodes: int | None = None
    num_edges: int | None = None
    params: int | None = None
    flops: int | None = None
    global_features: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None


class EncodeResponse(BaseModel):
    items: list[EncodeItem]
    encoder_version: str


# -- jobs ----------------------------------------------------------------------------------

class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no "0" -> false, "5" -> 5

    dataset_id: str = Field(max_length=36)
    predictor: str = Field("auto", max_length=64)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    model_name: str | None = Field(None, min_length=1, max_length=200,
                                   pattern=MODEL_NAME,
                                   description="registry name (a directory name: no '..'); "
                                   "another name than the configured one needs admin")
    activate: bool = Field(False, description="move the `active` alias to the new version "
                           "(admin only; the same as promote=always)")
    promote: Literal["never", "always", "if_better"] | None = Field(
        None, description="never; always (admin only); if_better: hold out each of the last "
        "generations of the active model's data, fit this recipe on this dataset and the active "
        "model's recipe on its own data without it, score both there, and promote only when "
        "measured better (a tie keeps the champion; with SURROGATE_PROMOTION_POLICY=approve it "
        "waits for an admin's approval). Recorded on the version as `comparison`. Unset: always "
        "for a name's first version (or with activate), else never")
    cv_folds: int = Field(0, ge=0, le=10, description="0: no report; k >= 2: also run grouped "
                          "k-fold cross-validation (one seed) and keep its trust report "
                          "(Kendall tau, validity AUC, NSGA-II/SPEA2 top-30% overlap) and "
                          "plots with the model version")


    @field_validator("model_name")
    @classmethod
    def _no_parent_segments(cls, value: str | None) -> str | None:
        if value is not None and ".." in value:
            raise ValueError("model_name may not contain '..'")
        return value


class PretrainRequest(BaseModel):
    """``POST /jobs/pretrain``: self-supervised pre-training of the graph encoder on genomes
    sampled from the grammar (masked node reconstruction); train with
    ``hyperparameters.embedding`` = this job's id to give a tree model its embedding."""

    model_config = ConfigDict(extra="forbid", strict=True)

    genomes: int = Field(_PRETRAIN.genomes, ge=8, le=2_000_000,
                         description="sampled genomes, each seen once (the corpus is streamed)")
    chunk: int = Field(_PRETRAIN.chunk, ge=1, le=4096, description="genomes per corpus chunk")
    processes: int | None = Field(None, ge=0, le=64, description="corpus encoder processes "
                                  "(null: cores - 1; 0: in the job's process)")
    seed: int = Field(_PRETRAIN.seed, ge=0, le=INT32_MAX)
    hidden: int = Field(_PRETRAIN.hidden, ge=4, le=1024)
    layers: int = Field(_PRETRAIN.layers, ge=1, le=12)
    batch_size: int = Field(_PRETRAIN.batch_size, ge=1, le=4096)
    lr: float = Field(_PRETRAIN.lr, gt=0, le=1.0)
    mask_rate: float = Field(_PRETRAIN.mask_rate, gt=0, lt=1.0)
    dims: int = Field(_PRETRAIN.dims, ge=1, le=256,
                      description="embedding columns given to the trees")
    projection_genomes: int = Field(_PRETRAIN.projection_genomes, ge=8, le=100_000)
    device: Literal[DEVICES] = _PRETRAIN.device  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _dims_fit(self) -> PretrainRequest:
        if self.dims > 2 * self.hidden:
            raise ValueError("dims may not exceed 2 * hidden (the pooled embedding's width)")
        return self


class JobError(BaseModel):
    code: str
    message: str | None


class EpochRow(BaseModel):
    epoch: int | None
    attempt: int
    metrics: dict[str, float | None] | None


class JobPublic(BaseModel):
    id: str
    kind: str
    status: Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
    progress: float
    message: str
    attempt: int
    max_attempts: int
    params: dict[str, Any]
    dataset_id: str | None
    created_at: UTCDatetime
    dispatched_at: UTCDatetime | None
    started_at: UTCDatetime | None
    heartbeat_at: UTCDatetime | None
    finished_at: UTCDatetime | None
    cancel_requested_at: UTCDatetime | None
    error: JobError | None
    model_name: str | None
    model_version: int | None
    epochs: list[EpochRow] | None = None
    #: What a job hands back besides a model (a ``propose`` job: its ProposeResponse).
    result: dict[str, Any] | None = None


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int
    next_page_token: str | None


class JobEventPublic(BaseModel):
    created_at: UTCDatetime
    kind: str
    attempt: int
    epoch: int | None
    message: str
    data: dict[str, Any] | None


# -- datasets ------------------------------------------------------------------------------

class DatasetPublic(BaseModel):
    id: str
    name: str
    status: Literal["pending", "ready", "failed"]
    metrics: list[str]
    job: JobPublic | None
    counts: dict[str, Any] | None
    created_at: UTCDatetime
    parent_id: str | None = Field(None, description="the version this one appends to")
    lineage: list[str] = Field(default_factory=list,
                               description="ancestor versions, oldest first")
    label_noise: dict[str, Any] | None = Field(
        None, description="pooled within-genome spread of repeated measurements")
    retrain_job_id: str | None = Field(None, description="the promote-if-better training an "
                                       "append with retrain=true queued")


class EvaluationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    genome: str = Field(max_length=1_000_000)
    metrics: dict[str, FiniteFloat | None] | None = Field(
        None, description="every metric of the evaluation (null = not measured; NaN and "
        "±Infinity are refused: a failure is `failed: true` or the loss sentinels); the "
        "dataset's metrics are its labels, the loss columns' sentinels mark failures")
    failed: bool | None = Field(None, description="the evaluation failed (sentinels, NaN and "
                                "±1e6 values are detected as well)")
    generation: int | None = Field(None, ge=0, le=1_000_000)
    curve: list[dict[str, float | None]] | None = Field(
        None, max_length=10_000, description="the whole per-epoch curve of the evaluation "
        "(one {metric: value} row per epoch, as the pipeline's metrics.csv), kept with the "
        "record by the dataset version so a later model can learn from partial curves")

    @field_validator("curve")
    @classmethod
    def _curve_rows(cls, value: list[dict[str, float | None]] | None
                    ) -> list[dict[str, float | None]] | None:
        if value is not None and any(len(row) > 200 for row in value):
            raise ValueError("at most 200 metrics per curve row")
        return value

    @field_validator("metrics")
    @classmethod
    def _finite_or_null(cls, value: dict[str, FiniteFloat | None] | None
                        ) -> dict[str, FiniteFloat | None] | None:
        if value is not None and len(value) > 200:
            raise ValueError("at most 200 metrics per record")
        return value


class EvaluationsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    dataset_id: str = Field(max_length=36, description="the version to append to")
    records: list[EvaluationRecord] = Field(min_length=1, max_length=10_000)
    retrain: bool = Field(False, description="queue one promote-if-better training on the new "
                          "version once it is built")
    skip_known: bool = Field(False, description="a record whose genome the parent's lineage "
                             "already holds is not added (counted in `duplicates`): ingesting "
                             "the same run again adds nothing; when nothing is new, the answer "
                             "is the parent with `job: null`")
    model: str | None = Field(None, min_length=1, max_length=200,
                              pattern=MODEL_NAME,
                              description="the model name that retrain trains (default: the "
                              "configured one; another name needs admin)")


class RejectedRecord(BaseModel):
    index: int
    error: GenomeErrorOut


class EvaluationsResponse(BaseModel):
    dataset_id: str
    parent_id: str
    added: int
    duplicates: int
    rejected: list[RejectedRecord]
    job: JobPublic | None = Field(description="the job building the new version (null only "
                                  "with skip_known when nothing was new)")


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


# -- models --------------------------------------------------------------------------------

class Lineage(BaseModel):
    job_id: str | None
    dataset_id: str | None
    encoder_version: str


class ModelVersionPublic(BaseModel):
    name: str
    version: int
    status: str
    predictor: str
    metrics: list[str]
    training_metrics: dict[str, Any]
    lineage: Lineage
    active: bool
    created_at: UTCDatetime
    report_plots: list[str]
    comparison: dict[str, Any] | None = Field(
        None, description="champion/challenger (promote=if_better): both sides' scores on "
        "the champion's held-out generations, the rule, its margins, the decision (`promoted`, "
        "`recommended`, `policy`, `awaiting_approval`, and who approved it)")


class ModelsPublic(BaseModel):
    data: list[ModelVersionPublic]
    count: int
    active_version: int | None
    name: str | None = None


# -- keys ----------------------------------------------------------------------------------

class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Literal["predict", "train", "admin"]] = Field(min_length=1, max_length=3)


class KeyPublic(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: UTCDatetime
    revoked_at: UTCDatetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the key itself, shown once")


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


# -- health --------------------------------------------------------------------------------

class Health(BaseModel):
    status: Literal["ok"]


class EncoderPoolStatus(BaseModel):
    """The encoder processes (``SURROGATE_ENCODER_PROCESSES``); not part of readiness: batches
    encode in the API process until the pool is ready."""

    processes: int
    ready: bool
    restarts: int
    encoded: int
    #: The workers were forked with every backbone already built (by the warmed fork server).
    warm_start: bool = False


class ModelServing(BaseModel):
    """Which version answers: the active one, or (``fallback``: the active bundle cannot be
    loaded, ``reason`` says why) the newest older version that loads."""

    active: int | None
    serving: int | None
    fallback: bool
    reason: str | None = None


class Readiness(BaseModel):
    ready: bool
    database: bool
    broker: bool | None
    active_model: int | None
    model_loaded: bool
    model: ModelServing | None = None
    encoder_pool: EncoderPoolStatus | None = None


class ProposeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    population: list[str] = Field(default_factory=list, max_length=MAX_BATCH_CEILING,
                                  description="genomes to start from (ssi and mutate need >= 2 "
                                  "/ >= 1); never proposed back")
    strategy: Literal[STRATEGIES] = DEFAULTS.strategy  # type: ignore[valid-type]
    k: int | None = Field(DEFAULTS.k, ge=1, description=f"proposals; default {K_DEFAULT_TEXT}")
    pool_size: int = Field(DEFAULTS.pool_size, ge=2, description="candidates bred or sampled "
                           "per round (at most SURROGATE_MAX_POOL_SIZE)")
    inner_generations: int = Field(DEFAULTS.inner_generations, ge=1, description="ssi rounds "
                                   "(at most SURROGATE_MAX_INNER_GENERATIONS)")
    parents_k: int = Field(DEFAULTS.parents_k, ge=2, description="parents per round, NSGA-II "
                           "on predicted fitness")
    acquisition: Literal[ACQUISITIONS] = DEFAULTS.acquisition  # type: ignore[valid-type]
    exclude: list[str] = Field(default_factory=list, description="genomes never to propose "
                               "(at most SURROGATE_MAX_EXCLUDE)")
    seed: int = Field(DEFAULTS.seed, ge=0, le=2 ** 63 - 1)
    model: str | None = Field(None, max_length=260, pattern=MODEL_REF,
                              description="NAME, NAME@VERSION or NAME@ALIAS (default: the "
                              "configured name's active version)")


class ProposeOrigin(BaseModel):
    op: str
    parents: list[str]


class ProposeItem(BaseModel):
    genome: str
    canonical_hash: str
    predictions: dict[str, float | None]
    std: dict[str, float | None] | None
    p_fail: float | None
    rank: int
    origin: ProposeOrigin


class ProposeStats(BaseModel):
    candidates: int
    invalid_offspring: int
    duplicates: int
    seconds: float


class ProposeResponse(BaseModel):
    items: list[ProposeItem]
    model_name: str
    model_version: int
    encoder_version: str
    stats: ProposeStats
