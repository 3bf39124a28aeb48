"""``ServiceSurrogate``: a drop-in for the evolution pipeline's ``Surrogate``
(``surrogates/surrogate.py`` of AaronMcDaniel/surrogate-evolution) over the service.

The pipeline adopts the service by changing the line that builds its surrogate::

    self.surrogate = ServiceSurrogate.from_env()   # or ServiceSurrogate(url, api_key=KEY)

and everything it calls on ``self.surrogate`` keeps its shape: ``set_fitnesses`` (four
positional arguments; the models and scalers it passes are the service's business now),
``cls_trust`` / ``reg_trust`` (measured by the service on the active model with the pipeline's
own protocol, kept on the model version), ``calc_trust``, ``optimize_trust``, ``models``,
``classifier_models``. ``update(run_dir)`` is what ``prepare_surrogate`` becomes, and
``simulated_surrogate_injection_new(pool)`` is the SSI in one ``POST /propose``.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

from nas_surrogate_client.client import CLAMP, OBJECTIVES, SurrogateClient

#: The pipeline's objectives and their DEAP weights (its ``[pipeline] objectives``).
DEFAULT_OBJECTIVES = {"uw_val_epoch_loss": -1.0, "ciou_loss": -1.0, "average_precision": 1.0}


class ServiceSurrogate:
    """The pipeline's ``Surrogate`` backed by the service (see the module docstring)."""

    def __init__(self, url: str | None = None, api_key: str = "", model: str | None = None,
                 objectives: dict[str, float] | None = None, fail_threshold: float = 0.5,
                 hash_fn: Callable[[str], str] | None = None,
                 individual_factory: Callable[[str], Any] | None = None, pset: Any = None,
                 ssi_fraction: float = 0.8, seed: int = 0,
                 client: SurrogateClient | None = None, **client_options: Any) -> None:
        """``url``/``api_key`` (or a ready ``client``); ``model``: NAME or NAME@VERSION (default:
        the service's active model); ``hash_fn``: the pipeline's hash of a genome string
        (``pipeline.get_hash_public``) for the dicts SSI returns (default: the service's
        canonical hash); ``individual_factory`` / ``pset``: how a genome string becomes the
        pipeline's individual (default: ``type(ind).from_string(s, pset)`` for a DEAP
        ``PrimitiveTree``, ``type(ind)(s)`` for a ``str`` individual)."""
        if client is None:
            if url is None:
                raise ValueError("give url (and api_key) or client")
            client = SurrogateClient(url, api_key=api_key, **client_options)
        self.client, self.model = client, model
        self.objectives = dict(objectives or DEFAULT_OBJECTIVES)
        self.fail_threshold, self.hash_fn = fail_threshold, hash_fn
        self.individual_factory, self.pset = individual_factory, pset
        self.ssi_fraction, self.seed = ssi_fraction, seed
        self.cls_trust = 0.0
        self.reg_trust = 0.0
        self.trust: dict[str, Any] = {}
        self.models: list[dict[str, Any]] = []
        self.classifier_models: list[dict[str, Any]] = []
        self.timings: list[tuple[str, float]] = []
        self.refresh()

    @classmethod
    def from_env(cls, data_dir: str | None = None, api_key: str | None = None,
                 key_file: str | None = None, **options: Any) -> ServiceSurrogate:
        """Connect through ``$SURROGATE_DATA_DIR/service.env`` (``SurrogateClient.from_env``)."""
        client_keys = {"timeout", "retries", "backoff_s", "batch_size"}
        client = SurrogateClient.from_env(data_dir, api_key=api_key, key_file=key_file,
                                          **{k: options.pop(k) for k in list(options)
                                             if k in client_keys})
        return cls(client=client, **options)

    # -- what the service keeps on the active model -----------------------------------------

    def refresh(self) -> dict[str, Any]:
        """Re-read the active model: its trusts (``pipeline_trust`` on the version) and the
        ``models`` / ``classifier_models`` lists the pipeline's bookkeeping reads."""
        report = self.client.trust_report(self.model)
        self.trust = report.get("pipeline_trust") or {}
        self.cls_trust = _unit(self.trust.get("cls_trust"))
        self.reg_trust = _unit(self.trust.get("reg_trust"))
        label = f"{report['name']}@{report['version']}"
        self.models = [{"name": label, "predictor": report["predictor"],
                        "validation_subset": list(range(len(self.objectives))),
                        "metrics_subset": list(range(len(self.objectives))),
                        "objectives": list(self.objectives)}]
        self.classifier_models = [{"name": label, "predictor": report["predictor"],
                                   "validation_subset": []}]
        return report

    def trust_report(self) -> dict[str, Any]:
        return self.client.trust_report(self.model)

    # -- the pipeline's calls ----------------------------------------------------------------

    @property
    def failure_fitness(self) -> tuple[float, ...]:
        """``(300, 300, -300)`` for the pipeline's objectives: the worst in each direction."""
        return tuple(CLAMP if w < 0 else -CLAMP for w in self.objectives.values())

    def set_fitnesses(self, inference_models: Any, cls_genome_scaler: Any,
                      reg_genome_scaler: Any, deap_list: Sequence[Any]
                      ) -> tuple[list[Any], list[Any]]:
        """The pipeline's call, four positional arguments (the first three are ignored: the
        service chooses its models). Works on a deep copy as the pipeline's does and returns
        ``(invalid, valid)``: predicted fitness clamped to ±300 on the valid ones, the failure
        fitness on the invalid ones (not encodable, or predicted to fail)."""
        individuals = copy.deepcopy(list(deap_list))
        items = self._predict([str(ind) for ind in individuals], "set_fitnesses")
        invalid, valid = [], []
        for ind, item in zip(individuals, items):
            fitness = self._fitness(item)
            ind.fitness.values = fitness or self.failure_fitness
            (valid if fitness is not None else invalid).append(ind)
        return invalid, valid

    def calc_trust(self, inference_models: Any = None, cls_genome_scaler: Any = None,
                   reg_genome_scaler: Any = None, cls_val_df: Any = None,
                   reg_val_df: Any = None) -> tuple[float, float]:
        """``(cls_trust, reg_trust)``: the service's measurement on the active model with the
        pipeline's protocol (its validation generations, not the frames passed here)."""
        self.refresh()
        return self.cls_trust, self.reg_trust

    def optimize_trust(self, cls_genome_scaler: Any = None, reg_genome_scaler: Any = None,
                       cls_val_df: Any = None, reg_val_df: Any = None) -> list[Any]:
        """``[reg_trust, indices]`` as the pipeline's: one regressor (index 0 of ``models``)
        per objective."""
        self.refresh()
        return [self.reg_trust, [0] * len(self.objectives)]

    def update(self, run_dir: str, generation: int | None = None, retrain: bool = True,
               timeout_s: float = 3600, **options: Any) -> dict[str, Any]:
        """What the pipeline's ``prepare_surrogate`` becomes: ingest the run directory (one
        generation, or all), run one promote-if-better training on the new dataset version and
        wait for it, then refresh the trusts. Returns the ingest answer with ``training`` (the
        finished training job, or None)."""
        answer = self._timed("ingest_run", self.client.ingest_run, run_dir,
                             generations=None if generation is None else [generation],
                             retrain=retrain, **options)
        answer["training"] = None
        if retrain and answer.get("job") is not None:
            dataset = self.client.dataset(answer["dataset_id"])
            job_id = dataset.get("retrain_job_id")
            if job_id:
                answer["training"] = self._timed("wait_training", self.client.wait, job_id,
                                                 timeout_s)
        self.refresh()
        return answer

    def simulated_surrogate_injection_new(self, selection_pool: Any,
                                          population_size: int | None = None,
                                          **options: Any) -> dict[str, Any]:
        """The pipeline's SSI in one ``POST /propose`` (``strategy: "ssi"``): ``{hash:
        individual}`` of ``int(ssi_fraction * population_size)`` new genomes (default
        ``population_size``: the pool's size) as the pool's individual type, each with its
        predicted fitness. Options go to ``/propose`` (``pool_size``, ``inner_generations``,
        ``parents_k``, ``seed``, ...)."""
        pool = list(selection_pool.values()) if isinstance(selection_pool, dict) \
            else list(selection_pool)
        if len(pool) < 2:
            raise ValueError("SSI needs at least two individuals to breed from")
        size = population_size or len(pool)
        k = max(1, int(size * self.ssi_fraction))
        options.setdefault("seed", self.seed)
        if self.model:
            options.setdefault("model", self.model)
        answer = self._timed("propose_ssi", self.client.propose, [str(i) for i in pool],
                             strategy="ssi", k=k, **options)
        make = self._factory(pool[0])
        out: dict[str, Any] = {}
        for item in answer["items"][:k]:
            ind = make(item["genome"])
            if hasattr(ind, "fitness"):
                ind.fitness.values = self._fitness(item) or self.failure_fitness
            key = self.hash_fn(item["genome"]) if self.hash_fn else item["canonical_hash"]
            out[key] = ind
        return out

    ssi = simulated_surrogate_injection_new

    # -- helpers ---------------------------------------------------------------------------

    def _predict(self, genomes: list[str], label: str) -> list[dict[str, Any]]:
        return self._timed(label, self.client.predict, genomes, model=self.model)

    def _timed(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import time

        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timings.append((label, time.perf_counter() - started))

    def _fitness(self, item: dict[str, Any]) -> tuple[float, ...] | None:
        """Predicted objectives clamped to ±300, or None when invalid / predicted to fail."""
        preds = item.get("predictions") or {}
        p_fail = item.get("p_fail")
        if not item.get("ok", True) or p_fail is None or p_fail >= self.fail_threshold \
                or any(preds.get(m) is None for m in self.objectives):
            return None
        return tuple(max(-CLAMP, min(CLAMP, float(preds[m]))) for m in self.objectives)

    def _factory(self, example: Any) -> Callable[[str], Any]:
        if self.individual_factory is not None:
            return self.individual_factory
        kind = type(example)
        if isinstance(example, str):
            return kind
        if hasattr(kind, "from_string") and self.pset is not None:
            return lambda text: kind.from_string(text, self.pset)
        raise TypeError(f"cannot build a {kind.__name__} from a genome string: pass "
                        "individual_factory=... or pset=... (the pipeline's primitive set)")


def _unit(value: Any) -> float:
    """A trust in [0, 1]; 0 when the version carries none (the pipeline's own default)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return min(1.0, max(0.0, number)) if math.isfinite(number) else 0.0


__all__ = ["DEFAULT_OBJECTIVES", "OBJECTIVES", "ServiceSurrogate"]
