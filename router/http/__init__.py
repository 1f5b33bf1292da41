"""The HTTP API: server, errors, and one module per resource."""
