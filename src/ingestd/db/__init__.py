"""Database access: where the database is, the connection pool, migrations and named queries."""

from ingestd.db.database import Database, resolve_database_url
from ingestd.db.queries import QUERIES

__all__ = ["QUERIES", "Database", "resolve_database_url"]
