"""The researchers' commands: ``annotate``, ``evaluate``, ``sweep``, ``batch``,
``calibrate``, ``report`` and ``export``.

Each lives in its own module (``pmld.cli_reference``, ``pmld.cli_evaluate``,
``pmld.cli_sweep``, ``pmld.cli_batch``, ``pmld.cli_calibrate``, ``pmld.cli_report``,
``pmld.cli_export``) with an ``add_parsers(subparsers)``; this module
adds them all to ``pmld``'s parser. Their heavy imports happen when a command runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["add_parsers"]


def add_parsers(subparsers: Any) -> None:
    from . import (
        cli_batch,
        cli_calibrate,
        cli_evaluate,
        cli_export,
        cli_reference,
        cli_report,
        cli_sweep,
    )

    for module in (
        cli_reference, cli_evaluate, cli_sweep, cli_batch, cli_calibrate, cli_report, cli_export
    ):
        module.add_parsers(subparsers)
