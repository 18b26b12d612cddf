"""``pmld calibrate``: placeholder while the command is being built (issue 7)."""

from __future__ import annotations

from typing import Any


def add_parsers(subparsers: Any) -> None:
    """Add the command's parser (none yet)."""
