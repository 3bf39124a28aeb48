"""Who is asking, as the services need it: the key's identity and whether it is an admin's.

A protocol (``app.api.deps.Principal`` fits it) so the services import nothing of the API
layer, which imports them.
"""
from __future__ import annotations

from typing import Protocol


class Caller(Protocol):
    @property
    def ident(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...
