"""Request features: token estimate, modalities, code, language and task."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from uniinfer.routing.analyser import (
    IMAGE_TOKENS_HIGH,
    IMAGE_TOKENS_LOW,
    Features,
    analyse,
    classify_task,
    detect_code,
    detect_language,
    estimate_text_tokens,
)
from uniinfer.types import ChatRequest

IMAGE = "https://example.com/cat.png"


def request(*messages: Any, **fields: Any) -> ChatRequest:
    msgs = [m if isinstance(m, dict) else {"role": "user", "content": m} for m in messages]
    return ChatRequest.model_validate({"model": "uniinfer/auto", "messages": msgs, **fields})


def image(detail: str | None = None) -> dict[str, Any]:
    url: dict[str, Any] = {"url": IMAGE} | ({"detail": detail} if detail else {})
    return {"type": "image_url", "image_url": url}


# --- token estimate ------------------------------------------------------------------------


def test_text_token_estimate_by_script() -> None:
    assert estimate_text_tokens("a" * 400) == 100  # Latin: ~4 characters per token
    assert estimate_text_tokens("漢" * 100) == 100  # CJK: ~1 character per token
    assert estimate_text_tokens("한" * 10 + "か" * 10) == 20
    assert estimate_text_tokens("я" * 100) == 50  # other alphabets: ~2 characters per token
    assert estimate_text_tokens("é" * 40) == 20  # two-byte UTF-8: half a token each
    assert estimate_text_tokens("ab漢") == pytest.approx(1.5)
    assert estimate_text_tokens("🙂" * 3) == 3  # astral characters: one token each
    assert estimate_text_tokens("\ud800x") == pytest.approx(1.25)  # a lone surrogate does not raise


def test_prompt_tokens_add_message_overhead() -> None:
    one = analyse(request("a" * 400)).prompt_tokens
    assert one == 100 + 3 + 3  # text + one message + reply priming
    two = analyse(request({"role": "system", "content": "b" * 40}, "a" * 400)).prompt_tokens
    assert two == one + 10 + 3


def test_images_count_a_fixed_estimate() -> None:
    base = analyse(request([{"type": "text", "text": "x" * 40}])).prompt_tokens
    high = analyse(request([{"type": "text", "text": "x" * 40}, image(), image("high")]))
    low = analyse(request([{"type": "text", "text": "x" * 40}, image("low")]))
    assert high.prompt_tokens == base + 2 * IMAGE_TOKENS_HIGH == base + 1530
    assert low.prompt_tokens == base + IMAGE_TOKENS_LOW == base + 85
    assert high.has_images
    assert low.has_images
    assert not analyse(request("hi")).has_images


def test_tools_and_tool_calls_count() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "d" * 400,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    plain = analyse(request("hi")).prompt_tokens
    with_tool = analyse(request("hi", tools=[tool]))
    assert with_tool.prompt_tokens > plain + 100
    assert with_tool.has_tools
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{" + "x" * 396 + "}"},
    }
    history = request(
        "weather?",
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        "thanks",
    )
    features = analyse(history)
    assert features.has_tools  # a tool-call history needs a tool-capable model too
    assert features.prompt_tokens >= 100 + 4 * 3 + 3
    assert features.messages == 4


def test_every_character_counts_beyond_the_scan_limit() -> None:
    small = analyse(request("word " * 1000)).prompt_tokens
    large = analyse(request("word " * 100_000)).prompt_tokens
    assert small == pytest.approx(5000 / 4, abs=10)
    assert large == pytest.approx(500_000 / 4, abs=10)


def test_assistant_text_refusal_and_reasoning_count() -> None:
    assistant = {
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": "r" * 40}],
        "reasoning_content": "t" * 40,
    }
    assert (
        analyse(request("hi", assistant, "ok")).prompt_tokens
        == analyse(request("hi", "ok")).prompt_tokens + 3 + 20
    )


# --- flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (None, False),
        ({"type": "text"}, False),
        ({"type": "json_object"}, True),
        ({"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}}, True),
    ],
)
def test_json_mode(response_format: dict[str, Any] | None, expected: bool) -> None:
    assert analyse(request("hello there", response_format=response_format)).json_mode is expected


def test_features_are_frozen_and_serialisable() -> None:
    features = analyse(request("hello"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        features.messages = 3  # type: ignore[misc]
    assert features.to_dict()["messages"] == 1
    assert isinstance(features, Features)


# --- code ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "What does this do?\n```\nx = 1\n```",
        "~~~\nls -la\n~~~",
        "def parse(line):\n    return line.split()",
        "class Stack:\n    pass",
        "class Widget extends Component {",
        "function add(a, b) {\n  return a + b\n}",
        "export async function load() {}",
        "#include <stdio.h>\nint main() { return 0; }",
        "from collections import deque",
        "fn main() {\n}",
        "func (s *Server) Start() error {",
        "public static void main(String[] args) {",
        "SELECT name FROM users WHERE id = 1",
        "x = 1;\ny = 2;\n",
        "if (a) { b(); } else { c(); }",
    ],
)
def test_code_is_detected(text: str) -> None:
    assert detect_code(text)


@pytest.mark.parametrize(
    "text",
    [
        "I have a class at noon; then lunch.\nSee you.",
        "The function of the liver is to filter blood.",
        "What is the best way to learn to cook?",
        '{"name": "Ada", "tags": {"a": 1}, "more": {"b": 2}}',  # data, not code
        "",
    ],
)
def test_prose_is_not_code(text: str) -> None:
    assert not detect_code(text)


def test_only_the_last_user_message_is_scanned_for_code() -> None:
    earlier = request("```\nprint(1)\n```", {"role": "assistant", "content": "ok"}, "thanks, tell me a story")
    assert not analyse(earlier).has_code
    assert analyse(request("hi", {"role": "assistant", "content": "ok"}, "def f(x):\n  return x")).has_code


# --- language ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Can you tell me what the weather is like in Paris during the spring?", "en"),
        ("Kannst du mir bitte sagen, wie das Wetter in Berlin im Frühling ist?", "de"),
        ("Peux-tu me dire comment est la météo à Paris au printemps, s'il vous plaît ?", "fr"),
        ("¿Puedes decirme cómo es el clima en Madrid durante la primavera?", "es"),
        ("Puoi dirmi com'è il tempo a Roma durante la primavera? Grazie mille.", "it"),
        ("Você pode me dizer como é o clima em Lisboa durante a primavera?", "pt"),
        ("Kun je me vertellen hoe het weer in Amsterdam is in de lente?", "nl"),
        ("请告诉我北京春天的天气怎么样？", "zh"),
        ("東京の春の天気はどうですか？教えてください。", "ja"),
        ("서울의 봄 날씨는 어떤가요?", "ko"),
        ("Расскажи мне, какая погода в Москве весной?", "ru"),
        ("كيف هو الطقس في القاهرة في الربيع؟", "ar"),
        ("वसंत में दिल्ली का मौसम कैसा होता है?", "hi"),
        ("Πώς είναι ο καιρός στην Αθήνα την άνοιξη;", "el"),
        ("איך מזג האוויר בתל אביב באביב?", "he"),
        ("อากาศในกรุงเทพฯ ช่วงฤดูใบไม้ผลิเป็นอย่างไร", "th"),
        ("Explain the Russian word Привет to me please, what does it mean?", "en"),
        ("hello", "en"),
        ("12345 !!!", "und"),
        ("", "und"),
        ("Lorem ipsum dolor sit amet, consectetur adipiscing elit", "und"),
        ("🙂🙂🙂", "und"),
        ("ひらがなだけのぶんしょうです", "ja"),
        ("你好，世界。今天天气很好！", "zh"),  # CJK punctuation is not kana
        ("ㅋㅋㅋ", "und"),
    ],
)
def test_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_language_of_the_last_user_message() -> None:
    req = request(
        {"role": "system", "content": "Du bist ein hilfreicher Assistent."}, "What is the capital of France?"
    )
    assert analyse(req).language == "en"


# --- task ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Fix this bug in my Python script", "code"),
        ("How do I write a regex for emails?", "code"),
        ("Extract all the dates from this email", "extraction"),
        ("List all people mentioned in the article", "extraction"),
        ("Summarize this article in three bullet points", "summarisation"),
        ("tl;dr of the meeting notes please", "summarisation"),
        ("Translate 'good morning' to Spanish", "translation"),
        ("How do you say thank you into German?", "translation"),
        ("Say hello in French", "translation"),
        ("Prove that the square root of 2 is irrational", "reasoning"),
        ("Why is the sky blue?", "reasoning"),
        ("What is 17 * 23?", "reasoning"),
        ("Write a poem about autumn leaves", "creative"),
        ("Tell me a bedtime story about a dragon", "creative"),
        ("Hi! How are you today?", "chat"),
        ("What's a good name for a cat?", "chat"),
        ("Is C++ faster than C#?", "code"),
        ("Find the named entities in this paragraph", "extraction"),
        ("Reply as JSON, please", "extraction"),
        ("How would you say 'cheers' in Welsh?", "translation"),
        ("Explain it step-by-step", "reasoning"),
        ("Improve my essay", "chat"),  # "prove" only as a whole word
        ("Write a short STORY!", "creative"),
    ],
)
def test_task_classification(text: str, task: str) -> None:
    assert classify_task(text, has_code=detect_code(text), json_mode=False) == task


def test_task_order_is_fixed() -> None:
    # code first, then extraction, summarisation, translation, reasoning, creative
    assert classify_task("Summarize this Python code", has_code=False, json_mode=False) == "code"
    assert classify_task("Summarize the key points", has_code=False, json_mode=True) == "extraction"
    assert classify_task("Translate this summary", has_code=False, json_mode=False) == "summarisation"
    assert classify_task("Translate: why so serious?", has_code=False, json_mode=False) == "translation"
    assert classify_task("Write a poem proving why love wins", has_code=False, json_mode=False) == "reasoning"
    assert classify_task("hello", has_code=True, json_mode=False) == "code"


def test_system_prompt_counts_for_task_but_not_its_target_language() -> None:
    assert classify_task("hello", "You are a coding assistant", has_code=False, json_mode=False) == "code"
    assert classify_task("hello", "Always answer in English.", has_code=False, json_mode=False) == "chat"
    req = request(
        {"role": "developer", "content": "Summarise whatever the user sends."}, "Some text about birds."
    )
    assert analyse(req).task == "summarisation"


def test_long_messages_are_classified_by_head_and_tail() -> None:
    document = "The committee met on Tuesday. " * 2000  # ~60 KB
    features = analyse(request(document + "\n\nSummarise the above in one paragraph."))
    assert features.task == "summarisation"
    assert features.language == "en"
    assert features.prompt_tokens > 15_000


def test_analyse_typical_request() -> None:
    text = "Wie ist das Wetter heute in Berlin? Bitte kurz antworten."  # 57 characters
    req = request(
        {"role": "system", "content": "You are a helpful assistant."},  # 28 characters
        [{"type": "text", "text": text}, image("low")],
    )
    assert analyse(req) == Features(
        prompt_tokens=3 + 3 + 7 + 3 + 15 + 85,  # priming, system, user (57 / 4 rounded up overall), image
        has_images=True,
        has_tools=False,
        json_mode=False,
        has_code=False,
        language="de",
        messages=2,
        task="chat",
    )
