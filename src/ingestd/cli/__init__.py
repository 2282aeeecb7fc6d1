"""The ``ingestd`` command: a thin surface over the library (see docs/reference/cli.md).

Each module registers its commands on the Typer apps of ``common``; importing them here, in this
order, gives ``ingestd --help`` its order.
"""

import importlib
import sys


def _import_hiding(module: str, hidden: str) -> None:
    """Import ``module`` while ``import hidden`` fails (a ``None`` in ``sys.modules``), so an
    optional extra it would load is left out; nothing to do if either is imported already."""
    if module in sys.modules or hidden in sys.modules:
        return
    sys.modules[hidden] = None  # type: ignore[assignment]
    try:
        importlib.import_module(module)
    finally:
        del sys.modules[hidden]


# Two libraries load rich (with pygments, ~0.15 s of CPU per process) for features we never use:
# structlog for its console renderer's tracebacks (our processors format exceptions as text before
# any renderer, so the output is the same), httpx for its own command line (click, pygments,
# rich). Hide those extras while the libraries are first imported; rich and click import as usual
# afterwards, where a command renders a table or serve starts uvicorn.
_import_hiding("structlog", "rich")
_import_hiding("httpx", "click")

from ingestd.cli import blobs, keys, pipeline, reports, system, traffic, watch  # noqa: E402
from ingestd.cli.common import app  # noqa: E402

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
