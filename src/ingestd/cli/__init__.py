"""The ``ingestd`` command: a thin surface over the library (see docs/reference/cli.md).

Each module registers its commands on the Typer apps of ``common``; importing them here, in this
order, gives ``ingestd --help`` its order.
"""

from ingestd.cli import blobs, keys, pipeline, reports, system, traffic, watch
from ingestd.cli.common import app

__all__ = [
    "app",
    "blobs",
    "keys",
    "main",
    "pipeline",
    "reports",
    "system",
    "traffic",
    "watch",
]


def main() -> None:
    app()
