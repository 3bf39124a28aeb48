"""A small Python client for the search loop (sync, httpx).

``SurrogateClient.predict`` chunks any number of genomes into batches the server accepts,
retries transient failures (connection errors, 502/503/504) with backoff, and returns the items
in input order. ``fitnesses`` turns them into what the evolution assigns to
``individual.fitness.values`` (surrogate-usage.md §5): ``(uw_val_epoch_loss, ciou_loss,
average_precision)`` clamped to ±300, and ``(300, 300, -300)`` for a genome predicted to fail or
that does not encode. ``train`` sends an ``Idempotency-Key`` so a retried submission never
starts a second training.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Sequence

import httpx

#: The evolution's objectives in its order, and the value a failed genome gets for each.
OBJECTIVES = ("uw_val_epoch_loss", "ciou_loss", "average_precision")
FAILED_FITNESS = (300.0, 300.0, -300.0)
CLAMP = 300.0
RETRY_STATUSES = {502, 503, 504}


class SurrogateError(RuntimeError):
    """A non-retryable error answer; ``code`` is the service's stable error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class SurrogateClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str = "",
                 timeout: float = 120.0, retries: int = 4, backoff_s: float = 0.5,
                 batch_size: int = 2000, http: httpx.Client | None = None) -> None:
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.retries, self.backoff_s, self.batch_size = retries, backoff_s, batch_size

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        for attempt in range(self.retries + 1):
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                    break
            time.sleep(self.backoff_s * 2 ** attempt)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "HTTP_ERROR", response.text[:200]
            raise SurrogateError(response.status_code, code, message)
        return response

    def predict(self, genomes: Sequence[str], rank_by: str = "nsga2") -> list[dict[str, Any]]:
        """Items in input order (``index`` is the position in ``genomes``)."""
        items: list[dict[str, Any]] = []
        for start in range(0, len(genomes), self.batch_size):
            chunk = list(genomes[start:start + self.batch_size])
            out = self._request("POST", "/predict",
                                json={"genomes": chunk, "rank_by": rank_by}).json()
            for item in out["items"]:
                items.append({**item, "index": item["index"] + start,
                              "model_version": out["model_version"]})
        return items

    def fitnesses(self, genomes: Sequence[str],
                  fail_threshold: float = 0.5) -> list[tuple[float, float, float]]:
        """The evolution's fitness tuples, in input order."""
        out = []
        for item in self.predict(genomes):
            preds = item.get("predictions") or {}
            if not item["ok"] or item["p_fail"] is None or item["p_fail"] >= fail_threshold \
                    or any(preds.get(m) is None for m in OBJECTIVES):
                out.append(FAILED_FITNESS)
                continue
            out.append(tuple(max(-CLAMP, min(CLAMP, float(preds[m]))) for m in OBJECTIVES))
        return out

    def train(self, dataset_id: str, predictor: str = "auto",
              hyperparameters: dict[str, Any] | None = None, activate: bool = False,
              idempotency_key: str | None = None) -> dict[str, Any]:
        body = {"dataset_id": dataset_id, "predictor": predictor,
                "hyperparameters": hyperparameters or {}, "activate": activate}
        key = idempotency_key or str(uuid.uuid4())
        return self._request("POST", "/jobs/train", json=body,
                             headers={"Idempotency-Key": key}).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}").json()

    def wait(self, job_id: str, timeout_s: float = 3600, poll_s: float = 2.0) -> dict[str, Any]:
        """Poll until the job is terminal (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s}s")
            time.sleep(poll_s)

    def close(self) -> None:
        self.http.close()

