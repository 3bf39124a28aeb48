"""The light client of nas-surrogate: httpx only, no torch (``pip install ./client``).

``SurrogateClient`` is the search loop's client of the HTTP API; ``ServiceSurrogate`` is a
drop-in for the evolution pipeline's ``Surrogate`` (``surrogates/surrogate.py``) over it.
"""
from nas_surrogate_client.client import (
    CLAMP,
    FAILED_FITNESS,
    MAX_RECORDS,
    OBJECTIVES,
    RETRY_STATUSES,
    SurrogateClient,
    SurrogateError,
    read_env_file,
)
from nas_surrogate_client.version import SERVICE_VERSIONS, __version__

__all__ = ["CLAMP", "FAILED_FITNESS", "MAX_RECORDS", "OBJECTIVES", "RETRY_STATUSES",
           "SERVICE_VERSIONS", "ServiceSurrogate", "SurrogateClient", "SurrogateError",
           "__version__", "read_env_file"]


def __getattr__(name: str) -> object:
    """``ServiceSurrogate`` on first use (it is the only part that may import deap)."""
    if name == "ServiceSurrogate":
        from nas_surrogate_client.surrogate import ServiceSurrogate

        return ServiceSurrogate
    raise AttributeError(name)
