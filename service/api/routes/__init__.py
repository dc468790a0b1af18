"""HTTP routes: thin handlers that parse, call a service function and return a schema."""
