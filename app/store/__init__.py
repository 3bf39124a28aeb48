"""SQL data access shared by the API and the workers (each function takes a Session)."""
