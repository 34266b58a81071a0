"""The ``uniinfer`` command line."""

from __future__ import annotations


def main() -> None:
    """Run the CLI; an unexpected exception is one line on stderr and exit 1, never a traceback.

    Commands report expected failures themselves (``error: ...``, exit 1);
    this is the net for the ones nobody foresaw, so a user still gets a
    message they can act on or report instead of a stack trace.
    """
    from uniinfer.cli.app import app

    try:
        app()
    except Exception as exc:
        from uniinfer.cli.output import error

        error(f"unexpected {type(exc).__name__}: {exc} (this is a bug in uniinfer; please report it)")
        raise SystemExit(1) from None


__all__ = ["main"]
