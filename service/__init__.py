"""The service's shared layer: one settings object, the database, the SQL tables and their
stores, the service error codes, API-key security and the job-queue client. The HTTP adapter
(``app``) and the job adapter (``worker``) both build on it and never import each other."""
