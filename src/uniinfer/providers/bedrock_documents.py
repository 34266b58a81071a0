"""Bedrock Converse ``document`` blocks from OpenAI ``file`` parts.

https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_DocumentBlock.html:
an OpenAI ``file`` part with inline ``file_data`` (what the Anthropic Messages ingress makes of a
base64 PDF ``document``) becomes ``{"document": {"format", "name", "source": {"bytes"}}}``, its
format from the data URL's media type (:data:`DOCUMENT_FORMATS`; any other type is an
InvalidRequestError naming it; a ``file_id`` an UnsupportedFeatureError: Bedrock cannot read
OpenAI's files). Bedrock's ``name`` takes only ASCII letters and digits, single spaces, hyphens,
parentheses and square brackets, at most 200 characters, and must be unique in the request
("Messages can't contain duplicate document names"), so it is made from ``filename``: the document
extension taken off, every run of other characters one space (``Q3_report.v2.pdf`` ->
``Q3 report v2``; accented letters keep their base letter, ``résumé`` -> ``resume``), ``document``
when nothing is left; a name met before (ignoring case) gets
`` (2)``, `` (3)``... in request order, which keeps a conversation's names, and so its cached
prefix, the same turn after turn. What else Bedrock limits (five documents a request, 4.5 MB each,
a text block beside a document) is left to its own 400.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from uniinfer.errors import InvalidRequestError
from uniinfer.providers.translation import data_url, inline_file_data
from uniinfer.types import chat

__all__ = ["DOCUMENT_FORMATS", "document", "name_documents"]

Json = dict[str, Any]


#: A document's media type -> its Converse ``format`` (DocumentBlock's formats).
DOCUMENT_FORMATS: Mapping[str, str] = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}


#: File name extensions taken off a document's name (the format says it).
_EXTENSIONS = frozenset({*DOCUMENT_FORMATS.values(), "htm", "markdown"})


#: What a document name may not hold (ASCII letters and digits, hyphens, parentheses and square
#: brackets only, between single spaces).
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9()\[\]-]+")


_NAME_LIMIT = 200


_UNNAMED = "document"


def document(part: chat.FilePart, where: str) -> Json:
    """An OpenAI ``file`` part with inline ``file_data``: a ``document`` block (named from its
    ``filename``, made unique in the request by :func:`name_documents`)."""
    file = part.file
    url = inline_file_data(part, where, "bedrock", "the document", "<media type>")
    parsed = data_url(url)
    if parsed is None:
        raise InvalidRequestError(
            f"{where}.file.file_data: a document must be a base64 data: URL, got "
            f"{url.partition(',')[0][:40]!r}",
            param=f"{where}.file.file_data",
        )
    media, data = parsed
    fmt = DOCUMENT_FORMATS.get(media)
    if fmt is None:
        raise InvalidRequestError(
            f"{where}.file.file_data: Bedrock accepts documents of the types "
            f"{', '.join(DOCUMENT_FORMATS)}, not '{media}'",
            param=f"{where}.file.file_data",
        )
    name = _document_name(file.get("filename") or "")
    return {"document": {"format": fmt, "name": name, "source": {"bytes": data}}}


def _document_name(filename: str) -> str:
    """A valid Converse document name from a file name (see the module docstring)."""
    stem, dot, extension = filename.rpartition(".")
    if not (dot and stem and extension.lower() in _EXTENSIONS):
        stem = filename
    # accented letters keep their base letter (résumé -> resume), other non-ASCII goes
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    name = " ".join(_NOT_IN_NAME.sub(" ", stem).split())[:_NAME_LIMIT].rstrip()
    return name or _UNNAMED


def name_documents(blocks: list[Json], names: set[str]) -> None:
    """Each document a name no earlier one in the request has (``names``, lower case): `` (2)``,
    `` (3)``... after a name taken (Bedrock refuses duplicates)."""
    for block in blocks:
        document = block.get("document")
        if document is None:
            continue
        wanted = name = document["name"]
        n = 1
        while name.lower() in names:
            n += 1
            suffix = f" ({n})"
            name = wanted[: _NAME_LIMIT - len(suffix)].rstrip() + suffix
        names.add(name.lower())
        document["name"] = name
