"""The HTTP surface (``ingestd serve``): health checks and the LlamaParse webhook, for now."""
