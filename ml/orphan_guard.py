"""Preloaded first by the encoder pool's fork server, before :mod:`ml.inference.preload`
(whose package import alone costs torch's, seconds): from here until that module has warmed
the server, the server ends as soon as its owner has ended (:func:`ml.lifeline.start_orphan_check`).
It lives outside ``ml.inference`` so that nothing heavy is imported before the check starts."""
from __future__ import annotations

from ml.lifeline import start_orphan_check

start_orphan_check()
