"""Service errors: one envelope ``{"error": {"code", "message", "details"}}``, one status table.

Codes are stable (clients branch on them); the HTTP status comes only from
:data:`ERROR_STATUS`, as MLflow maps its error codes. Genome errors inside a batch are not
service errors: they fail their own item with the genome error's code.
"""
from __future__ import annotations

from typing import Any

#: Every service error code and the HTTP status it maps to.
ERROR_STATUS: dict[str, int] = {
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "PATH_NOT_ALLOWED": 403,
    "TOO_MANY_REQUESTS": 429,
    "TOO_MANY_JOBS": 429,
    "NOT_FOUND": 404,
    "KEY_NOT_FOUND": 404,
    "JOB_NOT_FOUND": 404,
    "MODEL_NOT_FOUND": 404,
    "DATASET_NOT_FOUND": 404,
    "JOB_NOT_CANCELLABLE": 409,
    "IDEMPOTENCY_KEY_REUSED": 409,
    "DATASET_NOT_READY": 409,
    "MODEL_NOT_LOADABLE": 409,
    "MODEL_NOT_AWAITING_APPROVAL": 409,
    "BODY_TOO_LARGE": 413,
    "REQUEST_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "INVALID_REQUEST": 422,
    "BATCH_TOO_LARGE": 422,
    "GENOME_TOO_LONG": 422,
    "ALL_GENOMES_INVALID": 422,
    "UNKNOWN_METRIC": 422,
    "UNKNOWN_PREDICTOR": 422,
    "POPULATION_TOO_SMALL": 422,
    "INTERNAL_ERROR": 500,
    "DATABASE_UNAVAILABLE": 503,
    "BROKER_UNAVAILABLE": 503,
    "NO_ACTIVE_MODEL": 503,
    "SERVER_BUSY": 503,
    "DEADLINE_EXCEEDED": 503,
    "DISK_FULL": 507,
}

#: Job failure codes written to ``jobs.error_code`` (not HTTP errors).
JOB_ERROR_CODES: dict[str, str] = {
    "WORKER_LOST": "the worker died and the attempt limit is used up",
    "TIME_LIMIT": "the job ran past its soft time limit",
    "DATASET_INVALID": "the CSV could not be read or has none of the requested metrics",
    "DATASET_NOT_READY": "the training dataset is not built",
    "DATASET_NOT_FOUND": "the job names a dataset that does not exist",
    "TRAINING_FAILED": "training raised a deterministic error",
    "MODEL_INCOMPATIBLE": "the bundle's encoder or format does not match this service",
    "OUT_OF_MEMORY": "the job ran out of memory (host or CUDA)",
    "DEVICE_UNAVAILABLE": "the job asks for a device (e.g. cuda) this worker does not have",
    "MODEL_NOT_LOADABLE": "the model version a propose job names cannot be loaded here",
    "EMBEDDING_NOT_FOUND": "the pretrain job a training names has no embedder this worker can "
                           "read",
    "INVALID_REQUEST": "a propose job's request cannot run (e.g. too small a population)",
    "DISK_FULL": "the disk filled up while the job wrote its output (the partial output is "
                 "removed)",
    "INTERNAL_ERROR": "an unexpected error; see the job events",
}


class ServiceError(Exception):
    """An error the API answers with its code's status and the envelope."""

    def __init__(self, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(f"unregistered service error code {code!r}")
        super().__init__(message)
        self.code, self.message, self.details, self.headers = code, message, details, headers

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class JobFailure(Exception):
    """A deterministic job failure: the job fails at once with ``code`` (no retry)."""

    def __init__(self, code: str, message: str) -> None:
        if code not in JOB_ERROR_CODES:
            raise ValueError(f"unregistered job error code {code!r}")
        super().__init__(message)
        self.code, self.message = code, message
