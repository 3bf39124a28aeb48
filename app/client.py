"""The search loop's client, kept importable here: it lives in the light distribution
``nas-surrogate-client`` (``client/``, httpx only) so the loop's environment needs no torch."""
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

__all__ = ["CLAMP", "FAILED_FITNESS", "MAX_RECORDS", "OBJECTIVES", "RETRY_STATUSES",
           "SurrogateClient", "SurrogateError", "read_env_file"]
