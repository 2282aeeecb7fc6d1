"""The ``ingestd`` command run in this process (fast), leaving logging as it found it.

``load_settings`` configures structlog to write to the ``sys.stderr`` of the moment, which
CliRunner swaps for a buffer it closes afterwards; later tests would log into a closed file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import structlog
from typer.testing import CliRunner, Result

from ingestd.cli import app as cli
from ingestd.logs import REDACTING_FILTER


def invoke(args: list[str], env: Mapping[str, str]) -> Result:
    try:
        return CliRunner().invoke(cli, args, env=dict(env), catch_exceptions=False)
    finally:
        structlog.reset_defaults()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(REDACTING_FILTER)
