"""Imported once, by the encoder pool's fork server (``multiprocessing``'s forkserver preload),
never by anything else: the server builds every backbone variant and freezes its heap before it
forks its first worker, so each worker starts with them already built (shared copy-on-write)
instead of building them itself.

Why a server and not a fork of the API process: the API process has threads (uvicorn, the
warm-up, the job executor), and forking a threaded process is unsafe. The fork server is a
fresh single-threaded interpreter; it runs torch on one thread and starts none, so forking it is
the documented safe use (gc.freeze's own docs describe this pattern).

A failure here is logged, not raised: the server then forks unwarmed workers, which warm
themselves in their initializer (what every worker did before).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

try:
    import torch

    torch.set_num_threads(1)
    from ml.inference.pool import warm_process

    warm_process()
    WARMED = True
except Exception as exc:
    log.error("the encoder fork server could not warm up: %s", exc)
    WARMED = False
finally:
    from ml.lifeline import stop_orphan_check

    stop_orphan_check()  # started by ml.orphan_guard, preloaded first
