"""Settings, database engine, errors and security shared by the API and the workers."""
