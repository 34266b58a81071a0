"""Bedrock documents: OpenAI ``file`` parts and Anthropic ``document`` blocks as Converse
``document`` blocks (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_DocumentBlock.html).

The format comes from the data URL's media type, the name from the file name, made valid
(letters, digits, single spaces, hyphens, parentheses, square brackets) and unique in the
request. Through the server with the official ``anthropic`` and ``openai`` SDKs, over the
faithful fake, which refuses what Bedrock refuses.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio

from tests.fakes.bedrock import API_KEY, CHAT_MODEL, bedrock_app
from tests.fakes.common import run_fake
from tests.providers.bedrock_server import BedrockServer, bedrock_server
from tests.providers.test_bedrock import chat, sent
from uniinfer.errors import InvalidRequestError, UnsupportedFeatureError
from uniinfer.providers.bedrock_documents import DOCUMENT_FORMATS

PDF_BYTES = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PDF = base64.b64encode(PDF_BYTES).decode()
#: The name Bedrock takes (DocumentBlock.name), as the fake checks it.
VALID_NAME = re.compile(r"^(?:[A-Za-z0-9()\[\]-]|\s(?!\s))+$")


def file_part(
    filename: str | None = "report.pdf", media: str = "application/pdf", data: str = PDF
) -> dict[str, Any]:
    file = {"file_data": f"data:{media};base64,{data}"}
    if filename is not None:
        file["filename"] = filename
    return {"type": "file", "file": file}


def question(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "summarise"}]}]


def documents(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b["document"] for m in body["messages"] for b in m["content"] if "document" in b]


# --- the request ------------------------------------------------------------------------------


def test_a_pdf_file_part_becomes_a_document_block() -> None:
    content = sent(chat(question(file_part())))["messages"][0]["content"]
    assert content == [
        {"document": {"format": "pdf", "name": "report", "source": {"bytes": PDF}}},
        {"text": "summarise"},
    ]


@pytest.mark.parametrize(("media", "fmt"), sorted(DOCUMENT_FORMATS.items()))
def test_every_bedrock_format_by_media_type(media: str, fmt: str) -> None:
    [document] = documents(sent(chat(question(file_part(f"notes.{fmt}", media)))))
    assert (document["format"], document["name"]) == (fmt, "notes")


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("Q3_report.v2.pdf", "Q3 report v2"),
        ("budget (final) [draft]-1.xlsx", "budget (final) [draft]-1"),
        ("  many   spaces\tand\ttabs.pdf", "many spaces and tabs"),
        ("résumé final.pdf", "resume final"),  # accents fall, letters stay
        ("报告.pdf", "document"),  # nothing ASCII left
        ("notes.backup", "notes backup"),  # not a document extension: kept, as a word
        (".pdf", "pdf"),
        ("%%%.pdf", "document"),
        ("", "document"),
        (None, "document"),
        ("x" * 300 + ".pdf", "x" * 200),
    ],
)
def test_names_are_made_valid(filename: str | None, name: str) -> None:
    [document] = documents(sent(chat(question(file_part(filename)))))
    assert document["name"] == name
    assert VALID_NAME.match(document["name"])


def test_names_are_unique_in_the_request_and_stable_across_turns() -> None:
    first = [
        {
            "role": "user",
            "content": [file_part("report.pdf"), file_part(None), {"type": "text", "text": "a"}],
        },
        {"role": "assistant", "content": "ok"},
    ]
    later = [
        {
            "role": "user",
            "content": [file_part("Report.docx", DOCX), file_part(None), {"type": "text", "text": "b"}],
        },
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [file_part("x" * 250 + ".pdf"), file_part("x" * 230), {"type": "text", "text": "c"}],
        },
    ]
    names = [d["name"] for d in documents(sent(chat(first + later)))]
    assert names == ["report", "document", "Report (2)", "document (2)", "x" * 200, "x" * 196 + " (2)"]
    # the same history, a turn shorter, names its documents the same (a cached prefix stays valid)
    assert [d["name"] for d in documents(sent(chat(first)))] == names[:2]


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def test_an_unsupported_media_type_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequestError, match=re.escape("not 'application/zip'")) as info:
        sent(chat(question(file_part("a.zip", "application/zip"))))
    assert info.value.param == "messages[0].content[0].file.file_data"
    assert info.value.provider == "bedrock"
    assert "application/pdf" in info.value.message


@pytest.mark.parametrize(
    ("file", "error", "param"),
    [
        ({"file_id": "file-abc"}, UnsupportedFeatureError, "messages[0].content[0].file"),
        ({"filename": "a.pdf"}, UnsupportedFeatureError, "messages[0].content[0].file"),
        (
            {"file_data": "https://example.com/a.pdf"},
            InvalidRequestError,
            "messages[0].content[0].file.file_data",
        ),
        (
            {"file_data": "data:application/pdf,raw"},
            InvalidRequestError,
            "messages[0].content[0].file.file_data",
        ),
    ],
)
def test_documents_bedrock_cannot_read_are_refused_naming_the_part(
    file: dict[str, str], error: type[Exception], param: str
) -> None:
    with pytest.raises(error) as info:
        sent(chat(question({"type": "file", "file": file})))
    assert getattr(info.value, "param", None) == param


# --- the fake checks document blocks as Bedrock does -------------------------------------------


async def post(body: dict[str, Any]) -> tuple[int, str]:
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with (
        run_fake(bedrock_app()) as url,
        aiohttp.ClientSession() as session,
        session.post(f"{url}/model/{CHAT_MODEL}/converse", json=body, headers=headers) as resp,
    ):
        return resp.status, (await resp.json()).get("message", "")


def doc(**fields: Any) -> dict[str, Any]:
    return {"document": {"format": "pdf", "name": "report", "source": {"bytes": PDF}, **fields}}


def asking(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [*blocks, {"text": "summarise"}]}]}


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (asking(doc(format="pages")), "enum value set: [pdf, csv"),
        (asking(doc(name="report.pdf")), "can only contain alphanumeric"),
        (asking(doc(name="two  spaces")), "can only contain alphanumeric"),
        (asking(doc(name="")), "length between 1 and 200"),
        (asking(doc(name="x" * 201)), "length between 1 and 200"),
        (asking(doc(source={"bytes": "not base64!"})), "invalid base64"),
        (asking(doc(source={"bytes": PDF, "text": "x"})), "exactly one of"),
        (asking(doc(title="x")), "extraneous key"),
        (asking({"document": {"name": "report", "source": {"bytes": PDF}}}), "format"),
        (asking(doc(), doc()), "duplicate document names"),
        (asking(*[doc(name=f"d{i}") for i in range(6)]), "more than 5 documents"),
        ({"messages": [{"role": "user", "content": [doc()]}]}, "no text block"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "hi"}]},
                    {"role": "assistant", "content": [doc(), {"text": "x"}]},
                    {"role": "user", "content": [{"text": "hi"}]},
                ]
            },
            "not allowed in a assistant message",
        ),
        (
            asking(doc(source={"bytes": base64.b64encode(b"x" * 4_718_593).decode()})),
            "larger than 4.5 MB",
        ),
    ],
)
async def test_the_fake_refuses_documents_as_bedrock_does(body: dict[str, Any], text: str) -> None:
    status, message = await post(body)
    assert status == 400
    assert text in message


async def test_the_fake_takes_valid_documents() -> None:
    body = asking(
        doc(), doc(name="Report (2) [v1]-final", context="the Q3 numbers", citations={"enabled": True})
    )
    assert (await post(body))[0] == 200


# --- through the server --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def env() -> AsyncIterator[BedrockServer]:
    async with bedrock_server() as server:
        yield server


MODEL = "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_pdf_from_a_messages_client_reaches_bedrock_as_a_document(
    env: BedrockServer, stream: bool
) -> None:
    def pdf(title: str | None) -> dict[str, Any]:
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
            "cache_control": {"type": "ephemeral"},
        }
        return {**block, "title": title} if title else block

    kw: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [
            {
                "role": "user",
                "content": [
                    pdf("Q3 report.pdf"),
                    pdf(None),
                    pdf(None),
                    {"type": "text", "text": "summarise"},
                ],
            }
        ],
    }
    if stream:
        async with env.anthropic.messages.stream(**kw) as events:
            message = await events.get_final_message()
    else:
        message = await env.anthropic.messages.create(**kw)
    assert message.content[0].text == "echo: summarise"  # type: ignore[union-attr]
    content = env.last()["messages"][0]["content"]
    point = {"cachePoint": {"type": "default"}}
    assert content == [
        {"document": {"format": "pdf", "name": "Q3 report", "source": {"bytes": PDF}}},
        point,
        {"document": {"format": "pdf", "name": "document", "source": {"bytes": PDF}}},
        point,
        {"document": {"format": "pdf", "name": "document (2)", "source": {"bytes": PDF}}},
        point,
        {"text": "summarise"},
    ]
    assert base64.b64decode(content[0]["document"]["source"]["bytes"]) == PDF_BYTES


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_openai_file_parts_reach_bedrock_as_documents(env: BedrockServer, stream: bool) -> None:
    csv = base64.b64encode(b"city,temp\nParis,21\n").decode()
    messages: Any = question(file_part("Q3_report.v2.pdf"), file_part("temps.csv", "text/csv", csv))
    if stream:
        chunks = [
            c
            async for c in await env.openai.chat.completions.create(
                model=MODEL, messages=messages, stream=True
            )
        ]
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        answer = (
            (await env.openai.chat.completions.create(model=MODEL, messages=messages))
            .choices[0]
            .message.content
        )
    assert answer == "echo: summarise"
    assert documents(env.last()) == [
        {"format": "pdf", "name": "Q3 report v2", "source": {"bytes": PDF}},
        {"format": "csv", "name": "temps", "source": {"bytes": csv}},
    ]


async def test_an_unsupported_document_type_is_an_openai_400_naming_it(env: BedrockServer) -> None:
    messages: Any = question(file_part("a.zip", "application/zip"))
    with pytest.raises(openai.BadRequestError) as info:
        await env.openai.chat.completions.create(model=MODEL, messages=messages)
    assert isinstance(info.value.body, dict)
    assert info.value.body["param"] == "messages[0].content[0].file.file_data"
    assert "application/zip" in info.value.message
    assert env.app["requests"] == []  # nothing reached Bedrock
