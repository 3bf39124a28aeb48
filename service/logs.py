"""What the service's processes log: one line per event that matters to whoever runs it.

Two sources of noise are cut here, once per process, before anything else is imported:

* probe requests (``/healthz``, ``/readyz``, ``/metrics``): a load balancer, the test harness or
  a newcomer's ``curl`` loop polls them every second or two, and an access line each buried the
  lines that say something (``SURROGATE_ACCESS_LOG_PROBES=true`` logs them again);
* third-party warnings that tell the user of this service nothing they can act on (a library
  deprecating an API a dependency calls, printed once by every process that imports it). They
  are filtered in this process and, through ``PYTHONWARNINGS``, in every process it starts (the
  encoder pool's fork server is a fresh interpreter that does not inherit ``warnings`` filters).
"""
from __future__ import annotations

import os
import warnings

#: Request paths whose access lines are off by default (health and metrics probes).
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

#: (message prefix, category) of warnings that say nothing to this service's user. Each is a
#: library telling another library about its own API; none changes a result.
QUIET_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # torch_geometric scripts a few helpers at import; torch 2.x deprecates torch.jit.script.
    ("`torch.jit.script` is deprecated", FutureWarning),
)


def quiet_third_party() -> None:
    """Filter :data:`QUIET_WARNINGS` here and in child processes (idempotent)."""
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=_regex_prefix(message), category=category)
    entries = [f"ignore:{message}:{category.__name__}" for message, category in QUIET_WARNINGS]
    current = [e for e in os.environ.get("PYTHONWARNINGS", "").split(",") if e]
    os.environ["PYTHONWARNINGS"] = ",".join(current + [e for e in entries if e not in current])


def _regex_prefix(text: str) -> str:
    import re
    return re.escape(text)


def is_probe(path: str) -> bool:
    """Whether a request path is a health or metrics probe (no access line by default)."""
    return path in PROBE_PATHS
