"""Path parameters more than one router takes (the API's and the dashboard's)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Path

from service.tables import INT32_MAX

#: Versions are 32-bit INTEGER columns in SQL: a larger number is a client error (422), not a
#: database DataError (a 500).
VersionPath = Annotated[int, Path(ge=1, le=INT32_MAX)]
