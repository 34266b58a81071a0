"""The ``uniinfer`` command line."""

from __future__ import annotations


def main() -> None:
    from uniinfer.cli.app import app

    app()


__all__ = ["main"]
