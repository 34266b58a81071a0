"""Printing for the CLI: text that came from users, upstreams or config files is shown as is.

Rich reads ``[...]`` as markup and ``:name:`` as emoji codes, so printing such
text through a default console hides ``[redacted]`` or ``list[str]``, and a
stray ``[/INST]`` raises ``MarkupError``. Everything here prints text verbatim;
only our own fixed labels are styled. Errors are never hard-wrapped: rich wraps
at 80 columns when stderr is not a terminal, which splits messages in logs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["error", "escape_controls", "plain_console"]


def plain_console(*, stderr: bool = False) -> Console:
    """A console that interprets no markup, emoji codes or highlighting in strings (tables included)."""
    from rich.console import Console

    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


def error(message: str) -> None:
    """``error: <message>`` on stderr: the label styled, the message verbatim and unwrapped (its
    control characters escaped: a provider's message must not drive the terminal)."""
    from rich.text import Text

    message = escape_controls(message)
    plain_console(stderr=True).print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


#: C0 and C1 control characters but line feed and tab (ESC starts every terminal sequence).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with its control characters (but line feed and tab) written as escapes: ``\\x1b``."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
