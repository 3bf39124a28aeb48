"""A small Python client for the search loop (sync, httpx).

The loop's calls:

* ``predict`` chunks any number of genomes into batches the server accepts, retries transient
  failures (connection errors, 502/503/504) with backoff, and returns the items in input order;
  ``predict_frame`` gives them as a pandas DataFrame;
* ``set_fitnesses(individuals)`` is the evolution's ``Surrogate.set_fitnesses``: it reads
  ``str(individual)``, assigns ``individual.fitness.values`` = ``(uw_val_epoch_loss, ciou_loss,
  average_precision)`` clamped to ±300, ``(300, 300, -300)`` for a genome that does not encode
  or is predicted to fail, and returns ``(invalid, valid)`` in input order (``fitnesses`` gives
  the tuples alone);
* ``add_evaluations(records | DataFrame)`` appends evaluated genomes as a new dataset version
  (``retrain=True``: one promote-if-better training on it);
* ``trust_report(model)`` is what the registry holds on a version: its cross-validation figures
  and its champion/challenger comparison on held-out generations.

* ``ask(n)`` / ``tell(genome, metrics)`` / ``flush()``: the ask-and-tell loop of Optuna and Ax
  over ``/propose`` and ``/evaluations``; ``ingest_run(run_dir)``: the evolution's run directory
  as it is (:mod:`nas_surrogate_client.rundir`).

``train`` and ``add_evaluations`` send an ``Idempotency-Key``, so a retried submission never
starts a second job. Waiting (``wait``, ``add_evaluations``, ``propose``) polls with a back-off
that starts at 50 ms (a 30 ms job is not waited on for 2 s) and shows progress: a tqdm bar with
``progress=True``, or ``progress=callable`` called with each polled job.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

#: The evolution's objectives in its order, and the value a failed genome gets for each.
OBJECTIVES = ("uw_val_epoch_loss", "ciou_loss", "average_precision")
#: The evolution's fitness bound (its ``set_fitnesses``). Stated here and in
#: ``ml.search.strategies.FITNESS_CLAMP``, not taken from the service: this distribution imports
#: nothing of it, and ``/predict`` answers predictions in the metrics' units, not fitness
#: (a test of the service checks that both values agree).
CLAMP = 300.0
#: The worst value in each objective's direction (the first two are minimised).
FAILED_FITNESS = (CLAMP, CLAMP, -CLAMP)
RETRY_STATUSES = {502, 503, 504}
#: Records per POST /evaluations (the server's cap).
MAX_RECORDS = 10_000


class SurrogateError(RuntimeError):
    """A non-retryable error answer; ``code`` is the service's stable error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


Progress = bool | Callable[[dict[str, Any]], Any] | None
TERMINAL = ("succeeded", "failed", "cancelled")


class _Bar:
    """Progress of one wait: a tqdm bar (``True``; tqdm must be installed), a callback with each
    polled job (a callable), or nothing."""

    def __init__(self, progress: Progress, desc: str) -> None:
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm  # optional: pip install 'nas-surrogate-client[progress]'

            self.bar = tqdm(total=100, desc=desc, unit="%")

    def update(self, job: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(job)
        if self.bar is not None:
            self.bar.n = round(100 * float(job.get("progress") or 0.0), 1)
            self.bar.set_postfix_str(f"{job.get('status')}: {job.get('message') or ''}"[:60])
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines, ``export`` and quotes allowed), as the
    SLURM service job writes ``service.env``."""
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        out[key.strip()] = value.strip().strip("\"'")
    return out


class SurrogateClient:
    @classmethod
    def from_env(cls, data_dir: str | os.PathLike[str] | None = None, api_key: str | None = None,
                 key_file: str | os.PathLike[str] | None = None, **options: Any
                 ) -> SurrogateClient:
        """A client of the service whose ``service.env`` lies in ``data_dir`` (default
        ``$SURROGATE_DATA_DIR``): its ``SURROGATE_API_URL``; the key is ``api_key``, else the
        file ``key_file``, else ``$SURROGATE_API_KEY``, else ``data_dir/admin.key``."""
        root = data_dir or os.environ.get("SURROGATE_DATA_DIR")
        if not root:
            raise ValueError("no data_dir given and SURROGATE_DATA_DIR is not set")
        env_file = Path(root) / "service.env"
        if not env_file.is_file():
            raise FileNotFoundError(f"{env_file} does not exist (is the service job running?)")
        url = read_env_file(env_file).get("SURROGATE_API_URL")
        if not url:
            raise ValueError(f"{env_file} has no SURROGATE_API_URL line")
        if api_key is None and key_file is not None:
            api_key = Path(key_file).read_text().strip()
        if api_key is None:
            api_key = os.environ.get("SURROGATE_API_KEY")
        if api_key is None and (Path(root) / "admin.key").is_file():
            api_key = (Path(root) / "admin.key").read_text().strip()
        return cls(url, api_key=api_key or "", **options)

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str = "",
                 timeout: float = 120.0, retries: int = 4, backoff_s: float = 0.5,
                 batch_size: int = 2000, http: httpx.Client | None = None) -> None:
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.retries, self.backoff_s, self.batch_size = retries, backoff_s, batch_size
        self.pending: list[dict[str, Any]] = []  # told, not yet flushed

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

    def predict(self, genomes: Sequence[str], rank_by: str = "nsga2",
                model: str | None = None) -> list[dict[str, Any]]:
        """Items in input order (``index`` is the position in ``genomes``); ``model`` is NAME,
        NAME@VERSION or NAME@ALIAS (default: the server's active model)."""
        items: list[dict[str, Any]] = []
        for start in range(0, len(genomes), self.batch_size):
            chunk = list(genomes[start:start + self.batch_size])
            body: dict[str, Any] = {"genomes": chunk, "rank_by": rank_by}
            if model:
                body["model"] = model
            out = self._request("POST", "/predict", json=body).json()
            for item in out["items"]:
                items.append({**item, "index": item["index"] + start,
                              "model_name": out["model_name"],
                              "model_version": out["model_version"]})
        return items

    @staticmethod
    def fitness_of(item: dict[str, Any], fail_threshold: float = 0.5
                   ) -> tuple[float, float, float] | None:
        """The evolution's fitness of one item, or None when it is invalid (does not encode,
        or is predicted to fail, or lacks an objective)."""
        preds = item.get("predictions") or {}
        if not item["ok"] or item["p_fail"] is None or item["p_fail"] >= fail_threshold \
                or any(preds.get(m) is None for m in OBJECTIVES):
            return None
        return tuple(max(-CLAMP, min(CLAMP, float(preds[m]))) for m in OBJECTIVES)

    def fitnesses(self, genomes: Sequence[str], fail_threshold: float = 0.5,
                  model: str | None = None) -> list[tuple[float, float, float]]:
        """The evolution's fitness tuples, in input order (``FAILED_FITNESS`` when invalid)."""
        return [self.fitness_of(item, fail_threshold) or FAILED_FITNESS
                for item in self.predict(genomes, model=model)]

    def set_fitnesses(self, individuals: Sequence[Any], fail_threshold: float = 0.5,
                      model: str | None = None) -> tuple[list[Any], list[Any]]:
        """``Surrogate.set_fitnesses`` of the evolution: ``str(ind)`` of each individual is
        scored, ``ind.fitness.values`` is assigned, and ``(invalid, valid)`` come back in input
        order; invalid ones (no encoding, or predicted to fail) get ``(300, 300, -300)``."""
        items = self.predict([str(ind) for ind in individuals], model=model)
        invalid, valid = [], []
        for ind, item in zip(individuals, items):
            fitness = self.fitness_of(item, fail_threshold)
            ind.fitness.values = fitness or FAILED_FITNESS
            (valid if fitness is not None else invalid).append(ind)
        return invalid, valid

    def predict_frame(self, genomes: Sequence[str], model: str | None = None) -> Any:
        """:meth:`predict` as a pandas DataFrame, one row per genome in input order: ``genome``,
        ``ok``, ``error_code``, ``error_offset``, ``canonical_hash``, ``p_fail``, ``rank``, a
        column per predicted metric and ``std_<metric>``."""
        import pandas as pd

        rows = []
        for text, item in zip(genomes, self.predict(genomes, model=model)):
            error = item.get("error") or {}
            row = {"genome": text, "ok": item["ok"], "error_code": error.get("code"),
                   "error_offset": error.get("offset"), "canonical_hash": item["canonical_hash"],
                   "p_fail": item["p_fail"], "rank": item["rank"],
                   "model_name": item["model_name"], "model_version": item["model_version"]}
            row.update(item.get("predictions") or {})
            row.update({f"std_{k}": v for k, v in (item.get("std") or {}).items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def add_evaluations(self, records: Any, dataset_id: str | None = None,
                        retrain: bool = False, idempotency_key: str | None = None,
                        wait: bool = True, timeout_s: float = 3600,
                        model: str | None = None, progress: Progress = None,
                        skip_known: bool = False) -> dict[str, Any]:
        """Append evaluated genomes (dicts ``{"genome", "metrics", "failed", "generation"}``, or
        a DataFrame with a ``genome`` column, optional ``generation`` / ``failed`` and one
        column per metric) as a new dataset version of ``dataset_id`` (default: the version
        this client appended last, else the active model's dataset). More than 10,000 records
        go in consecutive calls, each on the version the previous one made. ``wait``: until
        the version is built (its ``job`` is then the finished job). Returns the last call's
        answer (``dataset_id``, ``added``, ``duplicates``, ``rejected``, ``job``). ``model``:
        the name ``retrain`` trains (and whose active dataset is the default parent);
        ``progress``: as :meth:`wait`; ``skip_known``: genomes the lineage already holds are
        not added again (an answer with ``job: None`` when nothing was new)."""
        rows = self._records(records)
        parent = dataset_id or getattr(self, "dataset_id", None) or self._active_dataset(model)
        answer: dict[str, Any] = {}
        key = idempotency_key or str(uuid.uuid4())
        for part, start in enumerate(range(0, len(rows), MAX_RECORDS)):
            chunk = rows[start:start + MAX_RECORDS]
            body = {"dataset_id": parent, "records": chunk, "retrain": retrain and
                    start + MAX_RECORDS >= len(rows)}
            if model:
                body["model"] = model
            if skip_known:
                body["skip_known"] = True
            answer = self._request("POST", "/evaluations", json=body,
                                   headers={"Idempotency-Key": f"{key}:{part}"}).json()
            parent = self.dataset_id = answer["dataset_id"]
            if answer["job"] is not None and (wait or start + MAX_RECORDS < len(rows)):
                answer["job"] = self.wait(answer["job"]["id"], timeout_s, progress=progress)
        return answer

    @staticmethod
    def _records(records: Any) -> list[dict[str, Any]]:
        if hasattr(records, "to_dict") and hasattr(records, "columns"):  # a pandas DataFrame
            frame = records
            fixed = {"genome", "generation", "failed"}
            out = []
            for row in frame.to_dict("records"):
                metrics = {k: (None if v != v else float(v)) for k, v in row.items()
                           if k not in fixed and isinstance(v, (int, float))
                           and not isinstance(v, bool)}
                generation = row.get("generation")
                failed = row.get("failed")
                out.append({"genome": str(row["genome"]), "metrics": metrics,
                            "generation": None if generation is None or generation != generation
                            else int(generation),
                            "failed": None if failed is None or failed != failed
                            else bool(failed)})
            return out
        return [dict(r) for r in records]

    def _active_dataset(self, model: str | None = None) -> str:
        version = self.active_version(model)
        name = (model or "").partition("@")[0] or None
        params = {"name": name} if name else {}
        info = self._request("GET", f"/models/{version}", params=params).json()
        return info["lineage"]["dataset_id"]

    def newest_version(self, dataset_id: str) -> str:
        """The newest ready dataset version that is ``dataset_id`` or appends to it (what an
        ingest appends to, so that a run ingested before is seen as known)."""
        newest, when = dataset_id, ""
        offset = 0
        while True:
            page = self._request("GET", "/datasets",
                                 params={"limit": 500, "offset": offset}).json()
            for ds in page["data"]:
                if ds["status"] == "ready" and dataset_id in (ds["id"], *ds.get("lineage", [])) \
                        and ds["created_at"] > when:
                    newest, when = ds["id"], ds["created_at"]
            offset += len(page["data"])
            if not page["data"] or offset >= page["count"]:
                return newest

    def active_version(self, model: str | None = None) -> int:
        name = (model or "").partition("@")[0] or None
        params = {"name": name} if name else {}
        version = self._request("GET", "/models", params=params).json()["active_version"]
        if version is None:
            raise SurrogateError(503, "NO_ACTIVE_MODEL", "no model is active")
        return int(version)

    def trust_report(self, model: str | None = None) -> dict[str, Any]:
        """What the registry holds on the active version of ``model`` (or NAME@VERSION): the
        cross-validation figures, and for a promote-if-better training the champion /
        challenger comparison on held-out generations with the decision."""
        name, _, ref = (model or "").partition("@")
        version = int(ref) if ref.isdigit() else self.active_version(model)
        params = {"name": name} if name else {}
        info = self._request("GET", f"/models/{version}", params=params).json()
        return {"name": info["name"], "version": info["version"],
                "predictor": info["predictor"], "active": info["active"],
                "cv": (info.get("training_metrics") or {}).get("cv"),
                "pipeline_trust": (info.get("training_metrics") or {}).get("pipeline_trust"),
                "comparison": info.get("comparison"), "lineage": info["lineage"]}

    def train(self, dataset_id: str, predictor: str = "auto",
              hyperparameters: dict[str, Any] | None = None, activate: bool = False,
              idempotency_key: str | None = None, promote: str | None = None,
              model_name: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"dataset_id": dataset_id, "predictor": predictor,
                                "hyperparameters": hyperparameters or {}, "activate": activate}
        if promote:
            body["promote"] = promote
        if model_name:
            body["model_name"] = model_name
        key = idempotency_key or str(uuid.uuid4())
        return self._request("POST", "/jobs/train", json=body,
                             headers={"Idempotency-Key": key}).json()

    def pretrain(self, idempotency_key: str | None = None, **options: Any) -> dict[str, Any]:
        """``POST /jobs/pretrain`` (options: ``genomes``, ``dims``, ``device``, ...); returns the
        queued job. Once it succeeded, pass its ``id`` as ``hyperparameters={"embedding": id}``
        to :meth:`train`."""
        key = idempotency_key or str(uuid.uuid4())
        return self._request("POST", "/jobs/pretrain", json=options,
                             headers={"Idempotency-Key": key}).json()

    def propose(self, population: Sequence[str] = (), strategy: str = "ssi",
                wait_s: float = 3600, progress: Progress = None,
                **options: Any) -> dict[str, Any]:
        """``POST /propose`` (options: ``k``, ``pool_size``, ``inner_generations``,
        ``parents_k``, ``acquisition``, ``exclude``, ``seed``, ``model``). A proposal the service
        queues as a job is waited for (up to ``wait_s``); either way the answer is
        ``{"items", "model_name", "model_version", "encoder_version", "stats"}``. ``progress``:
        while the service searches in the request, the seconds elapsed (a bar, or the callback
        with ``{"status": "running", "seconds": s}`` every second and once more with the
        outcome: ``succeeded``, ``queued`` or ``failed``); for a queued job, as :meth:`wait`."""
        body = {"population": list(population), "strategy": strategy,
                **{k: list(v) if k == "exclude" else v for k, v in options.items()}}
        response = self._in_request("POST", "/propose", progress, "propose", json=body)
        if response.status_code != 202:
            return response.json()
        job = self.wait(response.json()["id"], timeout_s=wait_s, progress=progress)
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            raise SurrogateError(200, error.get("code") or job["status"].upper(),
                                 error.get("message") or job["message"])
        return job["result"]

    def server_version(self) -> str:
        """The service's version (``/openapi.json`` ``info.version``); this client speaks to
        the versions in ``SERVICE_VERSIONS``."""
        return str(self._request("GET", "/openapi.json").json()["info"]["version"])

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}").json()

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._request("GET", f"/datasets/{dataset_id}").json()

    def _in_request(self, method: str, path: str, progress: Progress, desc: str,
                    **kwargs: Any) -> httpx.Response:
        """One request; with ``progress``, a second-by-second sign of life while it runs."""
        if not progress:
            return self._request(method, path, **kwargs)
        done = threading.Event()
        bar = _Bar(progress, desc)
        if bar.bar is not None:
            bar.bar.reset(total=None)
            bar.bar.unit = "s"

        def tick() -> None:
            started = time.monotonic()
            while not done.wait(1.0):
                seconds = round(time.monotonic() - started)
                if bar.callback is not None:
                    bar.callback({"status": "running", "seconds": seconds})
                if bar.bar is not None:
                    bar.bar.n = seconds
                    bar.bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        started = time.monotonic()
        ticker.start()
        status = "failed"
        try:
            response = self._request(method, path, **kwargs)
            status = "queued" if response.status_code == 202 else "succeeded"
            return response
        finally:
            done.set()
            ticker.join()
            seconds = round(time.monotonic() - started, 3)
            if bar.callback is not None:
                bar.callback({"status": status, "seconds": seconds})
            if bar.bar is not None:
                bar.bar.n = seconds
                bar.bar.refresh()
            bar.close()

    def wait(self, job_id: str, timeout_s: float = 3600, poll_s: float = 2.0,
             progress: Progress = None, first_poll_s: float = 0.05) -> dict[str, Any]:
        """Poll until the job is terminal and return it (or raise TimeoutError). The interval
        starts at ``first_poll_s`` and grows by half each poll up to ``poll_s``; ``progress``:
        ``True`` for a tqdm bar of the job's progress, or a callable given each polled job."""
        deadline = time.monotonic() + timeout_s
        interval = first_poll_s
        bar = _Bar(progress, f"job {job_id[:8]}")
        try:
            while True:
                job = self.job(job_id)
                bar.update(job)
                if job["status"] in TERMINAL:
                    return job
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s}s")
                time.sleep(min(interval, max(0.0, deadline - time.monotonic()) + 0.01))
                interval = min(poll_s, interval * 1.5)
        finally:
            bar.close()

    # -- ask / tell ------------------------------------------------------------------------

    def ask(self, n: int, population: Sequence[Any] = (), pending: Iterable[Any] = (),
            strategy: str | None = None, **options: Any) -> list[str]:
        """``n`` genomes to evaluate next, best first, proposed by ``/propose`` (``ssi`` from a
        ``population`` of at least 2, else ``neural_predictor``); never one of ``pending``
        (asked, not yet told), of the genomes told but not flushed, or of ``population``."""
        exclude = {str(g) for g in pending} | {r["genome"] for r in self.pending}
        exclude |= set(options.pop("exclude", ()))
        strategy = strategy or ("ssi" if len(population) >= 2 else "neural_predictor")
        answer = self.propose([str(g) for g in population], strategy=strategy, k=n,
                              exclude=sorted(exclude), **options)
        return [item["genome"] for item in answer["items"]][:n]

    def tell(self, genome: Any, metrics: dict[str, float | None] | None = None,
             failed: bool = False, generation: int | None = None,
             curve: list[dict[str, float | None]] | None = None) -> None:
        """Record one evaluation (``failed=True`` for a genome that did not train); buffered
        until :meth:`flush`."""
        if not failed and not metrics:
            raise ValueError("tell needs the metrics of a genome that did not fail")
        record: dict[str, Any] = {"genome": str(genome), "metrics": dict(metrics or {}),
                                  "failed": bool(failed), "generation": generation}
        if curve:
            record["curve"] = curve
        self.pending.append(record)

    def flush(self, retrain: bool = False, **options: Any) -> dict[str, Any] | None:
        """Append the told evaluations as one new dataset version (as :meth:`add_evaluations`);
        ``None`` when nothing was told. The buffer is emptied only once the service took it."""
        if not self.pending:
            return None
        answer = self.add_evaluations(list(self.pending), retrain=retrain, **options)
        self.pending.clear()
        return answer

    # -- the evolution's run directory -----------------------------------------------------

    def ingest_run(self, run_dir: str | os.PathLike[str],
                   generations: Iterable[int] | None = None,
                   best_epoch: tuple[str, str] = ("average_precision", "max"),
                   retrain: bool = False, wait: bool = True, **options: Any) -> dict[str, Any]:
        """Every individual of the pipeline's run directory (``eval_inputs``,
        ``generation_{g}/{hash}/metrics.csv``, ``out.csv``) as a record of ``/evaluations``:
        the best epoch's metrics by ``best_epoch`` and the whole per-epoch ``curve``; failures
        as failed records; a malformed file fails its own individual (``rejected``, with its
        code) and nothing else. Answers as :meth:`add_evaluations`; the same run again adds
        nothing (``duplicates``)."""
        from nas_surrogate_client.rundir import read_run

        run = read_run(run_dir, generations=generations, best_epoch=best_epoch)
        if not run.records:
            answer: dict[str, Any] = {"dataset_id": None, "added": 0, "duplicates": 0,
                                      "rejected": [], "job": None}
        else:
            if not options.get("dataset_id") and not getattr(self, "dataset_id", None):
                options["dataset_id"] = self.newest_version(
                    self._active_dataset(options.get("model")))
            answer = self.add_evaluations(run.records, retrain=retrain, wait=wait,
                                          skip_known=True, **options)
        # the service's rejections point at a record: say which individual of the run it is
        served = [{**r, **run.sources[r["index"]]} if isinstance(r.get("index"), int)
                  and r["index"] < len(run.sources) else r for r in answer.get("rejected") or []]
        answer["rejected"] = served + run.rejected
        answer["individuals"] = len(run.records) + len(run.rejected)
        return answer

    def close(self) -> None:
        self.http.close()

