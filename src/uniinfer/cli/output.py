"""Printing for the CLI: text that came from users, upstreams or config files is shown as is.

Rich reads ``[...]`` as markup and ``:name:`` as emoji codes, so printing such
text through a default console hides ``[redacted]`` or ``list[str]``, and a
stray ``[/INST]`` raises ``MarkupError``. Everything here prints text verbatim;
only our own fixed labels are styled. Errors are never hard-wrapped: rich wraps
at 80 columns when stderr is not a terminal, which splits messages in logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["error", "plain_console"]


def plain_console(*, stderr: bool = False) -> Console:
    """A console that interprets no markup, emoji codes or highlighting in strings (tables included)."""
    from rich.console import Console

    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


def error(message: str) -> None:
    """``error: <message>`` on stderr: the label styled, the message verbatim and unwrapped."""
    from rich.text import Text

    plain_console(stderr=True).print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
