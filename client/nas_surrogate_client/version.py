"""The client is versioned with the HTTP API it speaks: its major.minor is the service's."""
__version__ = "0.1.0"
#: Service versions (``/openapi.json`` ``info.version``) whose API this client speaks.
SERVICE_VERSIONS = ("0.1",)
