"""Placeholder: ``pmld`` subcommand(s) of this module are being written."""

from __future__ import annotations

from typing import Any


def add_parsers(subparsers: Any) -> None:
    """Add this module's subcommands to ``pmld``'s parser."""
