"""Request features for routing rules: size, modality, tools, JSON mode, code, language, task.

:func:`analyse` runs on every routed request, so everything here is a cheap,
transparent heuristic with bounded work — no model, no tokenizer:

* ``prompt_tokens`` is an **estimate for routing** (context-window and
  size-based rules), never for billing or quota: text by script
  (:func:`estimate_text_tokens`), 3 tokens per message and 3 for the reply
  priming (OpenAI cookbook, "How to count tokens with tiktoken"), tool
  definitions and tool-call arguments as text, and a fixed 765 tokens per
  image — OpenAI's figure for a 1024x1024 image in ``detail: high`` (85 base
  + 4 tiles x 170, "Calculating costs" in the OpenAI vision guide) — or 85
  with ``detail: low``. Audio and file parts are not estimated. Every
  character is counted, in C.
* ``has_code``, ``language`` and ``task`` look only at the **last user
  message** (plus the system/developer prompt for ``task``), clipped to its
  first and last 4 KB, so a long pasted document followed by "summarise this"
  is still classified by its instruction: see :func:`detect_code`,
  :func:`detect_language` and :func:`classify_task`.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import orjson

from uniinfer.config.routing import TaskClass
from uniinfer.types.chat import (
    AssistantMessage,
    ChatRequest,
    DeveloperMessage,
    ImagePart,
    Message,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)

__all__ = ["Features", "analyse", "classify_task", "detect_code", "detect_language", "estimate_text_tokens"]

#: Fixed cost of one image: OpenAI's 1024x1024 ``detail: high`` estimate (85 + 4 x 170).
IMAGE_TOKENS_HIGH = 765
#: ``detail: low``: one 512x512 pass.
IMAGE_TOKENS_LOW = 85
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3
TOOL_OVERHEAD_TOKENS = 8
#: Characters of the last user message (and of the system prompt) that classification reads.
SCAN_LIMIT = 8192
#: Characters the language guess reads (the start of the clipped message).
LANGUAGE_SCAN_LIMIT = 1024
#: Words the Latin-script stopword vote reads.
LANGUAGE_MAX_WORDS = 200


@dataclass(frozen=True, slots=True)
class Features:
    """What routing rules can test about a request (see the module docstring for how each is derived)."""

    prompt_tokens: int
    has_images: bool
    has_tools: bool
    json_mode: bool
    has_code: bool
    #: ISO 639-1 code of the last user message, or ``"und"`` when unsure.
    language: str
    messages: int
    task: TaskClass

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def analyse(request: ChatRequest) -> Features:
    """Derive routing features from a chat request (pure, bounded work besides counting characters)."""
    scan = _Scan()
    for message in request.messages:
        scan.message(message)
    for tool in request.tools or ():
        fn = tool.function
        scan.tokens += TOOL_OVERHEAD_TOKENS + estimate_text_tokens(fn.name)
        scan.tokens += estimate_text_tokens(fn.description or "")
        if fn.parameters:
            scan.tokens += len(orjson.dumps(fn.parameters)) / 4.0
    user_text = _clip(_text(scan.last_user.content) if scan.last_user is not None else "")
    system_text = _clip("\n".join(scan.system))
    fmt = request.response_format
    json_mode = fmt is not None and fmt.type in ("json_object", "json_schema")
    has_code = detect_code(user_text)
    return Features(
        prompt_tokens=math.ceil(scan.tokens),
        has_images=scan.images,
        has_tools=bool(request.tools) or scan.tool_history,
        json_mode=json_mode,
        has_code=has_code,
        language=detect_language(user_text),
        messages=len(request.messages),
        task=classify_task(user_text, system_text, has_code=has_code, json_mode=json_mode),
    )


@dataclass(slots=True)
class _Scan:
    """One pass over the messages: token estimate, images, tool history, prompts."""

    tokens: float = REPLY_PRIMING_TOKENS
    images: bool = False
    tool_history: bool = False
    last_user: UserMessage | None = None
    system: list[str] = field(default_factory=list)

    def message(self, message: Message) -> None:
        self.tokens += MESSAGE_OVERHEAD_TOKENS
        content = message.content
        if isinstance(content, str):
            self.tokens += estimate_text_tokens(content)
        elif content is not None:
            self._parts(content)
        if isinstance(message, UserMessage):
            self.last_user = message
        elif isinstance(message, SystemMessage | DeveloperMessage):
            self.system.append(_text(content))
        elif isinstance(message, AssistantMessage):
            self._assistant(message)
        elif isinstance(message, ToolMessage):
            self.tool_history = True

    def _parts(self, parts: Iterable[object]) -> None:
        for part in parts:
            if isinstance(part, TextPart):
                self.tokens += estimate_text_tokens(part.text)
            elif isinstance(part, ImagePart):
                self.images = True
                low = part.image_url.detail == "low"
                self.tokens += IMAGE_TOKENS_LOW if low else IMAGE_TOKENS_HIGH
            elif isinstance(part, RefusalPart):
                self.tokens += estimate_text_tokens(part.refusal)

    def _assistant(self, message: AssistantMessage) -> None:
        for text in (message.refusal, message.reasoning_content):
            if text:
                self.tokens += estimate_text_tokens(text)
        calls = [c.function for c in message.tool_calls or ()]
        if message.function_call is not None:
            calls.append(message.function_call)
        for call in calls:
            self.tool_history = True
            self.tokens += estimate_text_tokens(call.name) + estimate_text_tokens(call.arguments)


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(part.text for part in content if isinstance(part, TextPart))


def _clip(text: str) -> str:
    """At most SCAN_LIMIT characters: the head and the tail of a longer text."""
    if len(text) <= SCAN_LIMIT:
        return text
    half = SCAN_LIMIT // 2
    return text[:half] + "\n" + text[-half:]


# --- token estimate ------------------------------------------------------------------------


def estimate_text_tokens(text: str) -> float:
    """Estimated tokens of ``text`` (fractional; callers sum then round up).

    By the UTF-8 length of each character: 1 byte (ASCII) is 1/4 token; 2 bytes
    (accented Latin, Greek, Cyrillic, Hebrew, Arabic) 1/2; 3 bytes (CJK, kana,
    Hangul, Indic, Thai) and 4 bytes (emoji) 1 — the UTF-8 bytes are mapped to
    their length class with ``bytes.translate``, then counted.
    """
    n = len(text)
    if text.isascii():
        return n / 4.0
    classes = text.encode("utf-8", "surrogatepass").translate(_patterns().utf8_class)
    two = classes.count(b"2")
    wide = classes.count(b"3") + classes.count(b"4")
    return (n - two - wide) / 4.0 + two / 2.0 + wide


# --- code ----------------------------------------------------------------------------------


def detect_code(text: str) -> bool:
    """True when ``text`` holds code, by any of these signals.

    * a fenced block (```` ``` ```` or ``~~~``);
    * a line starting like a definition: ``def f(``, ``class X(``/``:``/``{``,
      ``function f(``, ``#include <``, ``from x import``, ``fn f(``,
      ``func f(``, ``public static T f(``, ``SELECT ... FROM``;
    * two or more lines ending in ``;`` (statement terminators);
    * braces density: at least 4 braces making up >= 2% of the text, together
      with at least 2 opening parentheses (so plain JSON data is not code).
    """
    if "```" in text or "~~~" in text:
        return True
    if text.count(";\n") + text.endswith(";") >= 2:
        return True
    braces = text.count("{") + text.count("}")
    if braces >= 4 and braces * 50 >= len(text) and text.count("(") >= 2:
        return True
    return _patterns().code_signature.search(text) is not None


# --- language ------------------------------------------------------------------------------


def detect_language(text: str) -> str:
    """ISO 639-1 guess for ``text``; ``"und"`` when there is too little evidence.

    Non-Latin scripts decide by script (letters weighted 3 for Han, kana and
    Hangul, 1 for alphabets; the heaviest script wins): Han is ``zh`` unless
    kana make up >= 10% of the CJK letters (``ja``), Hangul ``ko``, Cyrillic
    ``ru``, Arabic ``ar``, Devanagari ``hi``, Greek ``el``, Hebrew ``he``,
    Thai ``th``. Latin script votes with stopwords of en, de, fr, es, it, pt
    and nl (a word shared by k languages gives each 1/k): the winner needs a
    score of 2 (1 for texts of up to 4 words) and to beat the runner-up.
    """
    text = text[:LANGUAGE_SCAN_LIMIT]
    if not text.isascii():
        script = _script_language(text)
        if script != "latin":
            return script
    return _latin_language(text.lower())


#: Scripts by the lead byte of their letters in UTF-8: one ``bytes.translate`` pass maps each
#: byte to its script's index here, then ``bytes.count`` counts them (all in C).
_SCRIPT_LEADS: dict[str, bytes] = {
    "zh": b"\xe4\xe5\xe6\xe7\xe8\xe9",  # U+4000-9FFF: Han
    "ko": b"\xea\xeb\xec\xed",  # U+A000-DFFF: Hangul syllables AC00-D7AF
    "ru": b"\xd0\xd1\xd2\xd3",  # U+0400-04FF: Cyrillic
    "ar": b"\xd8\xd9\xda\xdb",  # U+0600-06FF: Arabic
    "el": b"\xce\xcf",  # U+0380-03FF: Greek
    "he": b"\xd7",  # U+05C0-05FF: Hebrew letters
    "latin": b"\xc3\xc4\xc5\xc6\xc7\xc8\xc9",  # U+00C0-027F (and the ASCII letters)
    "E3": b"\xe3",  # U+3000-3FFF: CJK punctuation and kana, told apart below
    "E0": b"\xe0",  # U+0800-0FFF: Indic and Thai, told apart below
}
#: Scripts that need the first two bytes: kana (U+3040-30FF), Devanagari and Thai.
_SCRIPT_PAIRS: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "ja": ("E3", (b"\xe3\x81", b"\xe3\x82", b"\xe3\x83")),
    "hi": ("E0", (b"\xe0\xa4", b"\xe0\xa5")),
    "th": ("E0", (b"\xe0\xb8", b"\xe0\xb9")),
}
#: Han, kana and Hangul weigh 3: one such character carries about what three letters do.
_CJK_WEIGHT = 3


def _script_language(text: str) -> str:
    """The dominant script's language, or "latin" (Latin letters dominate, or no letters at all)."""
    data = text.encode("utf-8", "surrogatepass")
    classes = data.translate(_patterns().script_class)
    counts = {name: classes.count(index) for index, name in enumerate(_SCRIPT_LEADS)}
    for name, (lead, pairs) in _SCRIPT_PAIRS.items():
        counts[name] = sum(map(data.count, pairs)) if counts[lead] else 0
    han, kana = counts["zh"], counts["ja"]
    scores = {name: counts[name] for name in ("ko", "ru", "ar", "el", "he", "hi", "th", "latin")}
    scores["ko"] *= _CJK_WEIGHT
    best = max(scores, key=scores.__getitem__)
    if han + kana > 0 and (han + kana) * _CJK_WEIGHT >= scores[best]:
        return "ja" if kana * 10 >= han + kana else "zh"
    return best if scores[best] else "latin"


def _latin_language(lowered: str) -> str:
    words = _tokens(lowered)[:LANGUAGE_MAX_WORDS]
    scores: dict[str, float] = {}
    # Count each distinct set of languages once (Counter runs in C), then share the votes.
    for group, hits in Counter(filter(None, map(_stopword_index().get, words))).items():
        languages = group.split(",")
        for lang in languages:
            scores[lang] = scores.get(lang, 0.0) + hits / len(languages)
    if not scores:
        return "und"
    ranked = sorted(scores.values(), reverse=True)
    best = max(scores, key=scores.__getitem__)
    runner_up = ranked[1] if len(ranked) > 1 else 0.0
    needed = 1.0 if len(words) <= 4 else 2.0
    return best if ranked[0] >= needed and ranked[0] > runner_up else "und"


#: The commonest function words per language, space-separated (one line each).
_STOPWORDS: dict[str, str] = {
    "en": "the and is are was were be been of to in that it for on with as at by this from or an not but what which who how why when where you your we they he she do does did have has had can could would should will please thanks thank hello hi there their about if so my me i just like some all them these those than then into also tell explain write make help",
    "de": "der die das und ist nicht ein eine einen einem einer dem den des mit sich auf für von zu im in ich du wir sie es auch wie was warum wenn oder aber bitte danke hallo nach bei noch nur kann kannst können sind mein mir mich dich uns habe hast hat werden wird dass kein keine über wo wer schreibe erkläre sagen",
    "fr": "le la les des du un une et est sont pas que qui dans pour sur avec ce cette ces il elle nous vous je tu ne au aux mais ou où comment pourquoi merci bonjour plus leur être avoir fait très me te se en y à peux pouvez dis dire écris explique mon ma mes ton votre été quel quelle sans chez si",
    "es": "el la los las de del y es son que en un una por para con no se lo como pero más qué cómo hola gracias está están esto esta este yo tú usted muy mi cuál me te puedes puede sobre también hay dónde cuando porque escribe explica tu su al sin",
    "it": "il lo la gli le di del della che è e un una per con non sono come ma più perché ciao grazie questo questa anche mi ti si cosa molto nel sul in puoi può sei ho hai ha scrivi spiega dove quando nella alla degli dei delle i",
    "pt": "o a os as de do da dos das e é um uma que não para com em no na por como mas mais você obrigado obrigada olá isso este esta são está muito meu me pode podes sobre também há onde quando porque escreva explique seu sua ao à pelo pela nos nas eu",
    "nl": "de het een en van is dat niet die ik je jij wij zijn met voor op te er wat hoe waarom maar ook bedankt hallo dank dit deze naar bij heb in me kun kunt wil hebben heeft wordt worden geen ben mijn u uw om als zo nog dan al kan schrijf leg uit waar wanneer omdat over",
}


@functools.cache
def _stopword_index() -> dict[str, str]:
    """Word -> the languages it is a stopword of, comma-joined (a str hashes once, a tuple every time)."""
    index: dict[str, list[str]] = {}
    for lang, words in _STOPWORDS.items():
        for word in set(words.split()):
            index.setdefault(word, []).append(lang)
    return {word: ",".join(langs) for word, langs in index.items()}


# --- task ----------------------------------------------------------------------------------

#: Keywords per task, in classification order. Text is lower-cased and punctuation but ``+#_``
#: becomes spaces, so "tl;dr" reads "tl dr" and "step-by-step" "step by step".
#: An entry is a word, a phrase (matched on word boundaries) or, ending in ``*``, a prefix.
TASK_KEYWORDS: dict[TaskClass, str] = {
    "code": "code, coding, programming, debug*, refactor*, compile, compiler, compiling, python, python3, "
    "javascript, typescript, java, golang, kotlin, c++, c#, sql, regex, bash, powershell, stacktrace, "
    "stack trace, traceback, segfault, unit test, unit tests, function that, dockerfile",
    "extraction": "extract*, parse, parsing, list all, pull out, identify all, identify every, find all, "
    "named entit*, as json, into json, in json, to json, structured data, key value pairs, classify, "
    "categorize, categorise",
    "summarisation": "summar*, tl dr, tldr, key points, key takeaways, main points, condense, recap, "
    "in a nutshell, gist, shorten",
    "translation": "translat*, übersetz*, tradu*, how do you say, how would you say, how do i say",
    "reasoning": "prove, proof, step by step, why, reason, reasoning, derive, derivation, deduce, calculate, "
    "compute, solve, equation, theorem, lemma, integral, derivative, probability, how many, logic puzzle, "
    "logical puzzle, riddle, think carefully, think through",
    "creative": "poem, poetry, story, stories, haiku, limerick, sonnet, lyrics, song, fiction, fairy tale, "
    "fairy tales, fairytale, screenplay, joke, slogan, rhym*, creative",
}
#: "into French", "in Japanese"...: a translation request, read in the user message only
#: (a system prompt saying "answer in English" does not make every request a translation).
TARGET_LANGUAGES = (
    "english french german spanish italian portuguese dutch chinese mandarin japanese korean "
    "russian arabic hindi greek hebrew thai turkish polish swedish vietnamese"
)
#: Arithmetic (``12 * 7``, ``x^2 = 4``) or math symbols also mean reasoning.
MATH_SIGNAL = r"\d\s*[+*^×÷=]\s*\d|[∑∫√π≤≥≠]"


def classify_task(user_text: str, system_text: str = "", *, has_code: bool, json_mode: bool) -> TaskClass:
    """The first task that applies, in this order (else ``"chat"``).

    1. ``code``: ``has_code`` or a programming keyword;
    2. ``extraction``: ``json_mode`` or an extraction keyword;
    3. ``summarisation``; 4. ``translation`` (also "into/in/to <language>" in
       the user message); 5. ``reasoning`` (also arithmetic); 6. ``creative``.

    Keywords (:data:`TASK_KEYWORDS`) are English and looked up in the user
    message and the system prompt.
    """
    if has_code:
        return "code"
    found = _keyword_hits(user_text, user=True) | _keyword_hits(system_text, user=False)
    for task in TASK_KEYWORDS:
        if task in found or (task == "extraction" and json_mode):
            return task
        if task == "reasoning" and (_has_math(user_text) or _has_math(system_text)):
            return task
    return "chat"


def _has_math(text: str) -> bool:
    # Operators are rarer than digits: substring checks (C) spare most texts the regular expression.
    return any(op in text for op in "+*^×÷=∑∫√π≤≥≠") and _patterns().math.search(text) is not None


def _keyword_hits(text: str, *, user: bool) -> set[str]:
    """The tasks whose keywords occur in ``text``: set lookups, no per-character Python work."""
    index = _patterns().keywords
    words = _tokens(text.lower())
    unique = set(words)
    hits = {index.words[word] for word in unique & index.words.keys()}
    hits.update(index.prefix_task(word) for word in unique if word.startswith(index.prefixes))
    keys = unique & index.phrases.keys()
    if keys:
        joined = f" {' '.join(words)} "
        for key in keys:
            hits.update(task for phrase, task in index.phrases[key] if phrase in joined)
    if "target" in hits:
        hits.remove("target")
        if user:
            hits.add("translation")
    return hits


def _tokens(lowered: str) -> list[str]:
    """Words: runs of anything but spaces and punctuation, keeping ``+#_`` ("c++", "c#").

    ASCII punctuation becomes spaces with ``bytes.translate`` on the UTF-8 bytes
    (multi-byte characters pass through untouched), common Unicode marks with
    ``str.replace`` — both C loops, unlike a regular expression or ``str.translate``.
    """
    if not lowered.isascii():
        for mark in _UNICODE_BREAKS:
            lowered = lowered.replace(mark, " ")
    data = lowered.encode("utf-8", "surrogatepass").translate(_patterns().word_breaks)
    return data.decode("utf-8", "surrogatepass").split()


_UNICODE_BREAKS = "¡¿«»“”‘’„…–—、。，！？：；（）「」"


@dataclass(frozen=True, slots=True)
class _KeywordIndex:
    """TASK_KEYWORDS compiled: word -> task, prefixes, and phrases indexed by one of their words."""

    words: dict[str, str]
    prefixes: tuple[str, ...]
    prefix_tasks: tuple[str, ...]
    #: A word of the phrase (the last, or the first for a prefix) -> (" the phrase ", task) pairs.
    #: A phrase is only searched for when that word occurs; a prefix has no trailing space.
    phrases: dict[str, list[tuple[str, str]]]

    @classmethod
    def build(cls, specs: Iterable[tuple[str, str]]) -> _KeywordIndex:
        words: dict[str, str] = {}
        prefixes: dict[str, str] = {}
        phrases: dict[str, list[tuple[str, str]]] = {}
        for task, spec in specs:
            for entry in (e.strip() for e in spec.split(",")):
                if " " in entry:
                    prefix = entry.endswith("*")
                    key = entry.split()[0] if prefix else entry.split()[-1]
                    phrase = f" {entry[:-1]}" if prefix else f" {entry} "
                    phrases.setdefault(key, []).append((phrase, task))
                elif entry.endswith("*"):
                    prefixes[entry[:-1]] = task
                else:
                    words[entry] = task
        return cls(words, tuple(prefixes), tuple(prefixes.values()), phrases)

    def prefix_task(self, word: str) -> str:
        return next(t for p, t in zip(self.prefixes, self.prefix_tasks, strict=True) if word.startswith(p))


# --- compiled patterns (built on first use, not at import) --------------------------------


class _Patterns(NamedTuple):
    #: ``bytes.translate`` table: each UTF-8 byte to its length class (a, c for continuation, 2, 3, 4).
    utf8_class: bytes
    #: ``bytes.translate`` table: each byte to the index of its script in _SCRIPT_LEADS (255: none).
    script_class: bytes
    #: ``bytes.translate`` table turning ASCII punctuation but ``+#_`` into spaces.
    word_breaks: bytes
    code_signature: re.Pattern[str]
    keywords: _KeywordIndex
    math: re.Pattern[str]


_CODE_SIGNATURE = r"""^[ \t]*(?:
    (?:async[ \t]+)?def[ \t]+\w+[ \t]*\(
  | class[ \t]+\w+[ \t]*(?:[(:{]|(?:extends|implements)\b)
  | (?:export[ \t]+)?(?:async[ \t]+)?function\b[ \t]*\w*[ \t]*\(
  | \#include[ \t]*[<"]
  | from[ \t]+[\w.]+[ \t]+import[ \t]
  | (?:pub[ \t]+)?fn[ \t]+\w+[ \t]*[(<]
  | func[ \t]+(?:\([^)\n]*\)[ \t]*)?\w+[ \t]*\(
  | (?:public|private|protected)[ \t]+(?:static[ \t]+)?[\w<>\[\],]+[ \t]+\w+[ \t]*\(
  | SELECT[ \t].*[ \t]FROM[ \t]
)"""


def _script_table() -> bytes:
    table = bytearray(b"\xff" * 256)
    for index, (name, leads) in enumerate(_SCRIPT_LEADS.items()):
        for lead in leads + (string.ascii_letters.encode() if name == "latin" else b""):
            table[lead] = index
    return bytes(table)


@functools.cache
def _patterns() -> _Patterns:
    targets = ", ".join(f"{p} {lang}" for lang in TARGET_LANGUAGES.split() for p in ("in", "into", "to"))
    breaks = "".join(c for c in string.punctuation if c not in "+#_").encode()
    return _Patterns(
        utf8_class=bytes.maketrans(
            bytes(range(256)), b"a" * 128 + b"c" * 64 + b"2" * 32 + b"3" * 16 + b"4" * 16
        ),
        script_class=_script_table(),
        word_breaks=bytes.maketrans(breaks, b" " * len(breaks)),
        code_signature=re.compile(_CODE_SIGNATURE, re.MULTILINE | re.VERBOSE),
        keywords=_KeywordIndex.build([*TASK_KEYWORDS.items(), ("target", targets)]),
        math=re.compile(MATH_SIGNAL),
    )
