"""The work one request may cause: graph nodes encoded (cache misses) and wall time.

Exceeding either raises :class:`BudgetExceeded` with a stable code instead of letting memory or
latency run away; the genomes encoded so far stay in the engine's caches, so a retry continues
where it stopped. The service maps the codes to its answers (413 ``REQUEST_TOO_LARGE``, 503
``DEADLINE_EXCEEDED`` with ``Retry-After``); the library knows nothing of HTTP.
"""
from __future__ import annotations

import time
from typing import Any


class BudgetExceeded(Exception):
    """A request ran out of its budget. ``code``: ``REQUEST_TOO_LARGE`` (graph nodes) or
    ``DEADLINE_EXCEEDED`` (wall time); ``retry_after_s``: when a retry makes sense (the
    deadline's case: the work done is cached)."""

    def __init__(self, code: str, message: str, details: dict[str, Any],
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.retry_after_s = retry_after_s


class RequestBudget:
    """Graph nodes (``max_nodes``, 0 = unbounded) and seconds (``deadline_s``, 0 = none) one
    request may spend, counted from its creation."""

    def __init__(self, max_nodes: int, deadline_s: float) -> None:
        self.max_nodes, self.deadline_s = max_nodes, deadline_s
        self.nodes = 0
        self.started = time.monotonic()

    @property
    def deadline(self) -> float | None:
        """The ``time.monotonic()`` value the request must end by; None when unbounded."""
        return self.started + self.deadline_s if self.deadline_s else None

    def spend(self, nodes: int, index: int) -> None:
        """Count ``nodes`` encoded for the genome at ``index``; raises past the limit."""
        self.nodes += nodes
        if self.max_nodes and self.nodes > self.max_nodes:
            raise BudgetExceeded("REQUEST_TOO_LARGE", f"the genomes up to index {index} "
                                 f"already need {self.nodes} graph nodes of encoding (limit "
                                 f"{self.max_nodes}); send smaller batches",
                                 {"max_request_nodes": self.max_nodes, "index": index})

    def check_time(self, index: int) -> None:
        """Raises when the deadline has passed (checked before the genome at ``index``)."""
        if self.deadline_s and time.monotonic() - self.started > self.deadline_s:
            raise BudgetExceeded("DEADLINE_EXCEEDED", f"the request ran past its "
                                 f"{self.deadline_s:g} s deadline at index {index}; the work "
                                 "done is cached, retry to continue",
                                 {"deadline_s": self.deadline_s, "index": index},
                                 retry_after_s=1)
