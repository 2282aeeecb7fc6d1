"""Embedder adapters behind the ``ingestd.ports.Embedder`` port: hash, local model, OpenAI."""
