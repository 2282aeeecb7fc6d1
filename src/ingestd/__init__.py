"""ingestd: durable document ingestion — parse, chunk, embed and store documents in PostgreSQL."""

__version__ = "0.1.0"
