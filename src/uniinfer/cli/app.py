"""``uniinfer serve | chat | models | providers | config validate | --version``.

Commands import what they need inside their bodies, so ``uniinfer --help``
and ``uniinfer serve`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from uniinfer.config import Config
    from uniinfer.gateway import Gateway
    from uniinfer.providers.base import ProviderSpec

app = typer.Typer(
    name="uniinfer",
    help="One fast, trustworthy gateway to every AI model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
route_app = typer.Typer(help="Inspect routing decisions.", no_args_is_help=True)
app.add_typer(route_app, name="route")
experiments_app = typer.Typer(help="A/B experiments on a running gateway.", no_args_is_help=True)
app.add_typer(experiments_app, name="experiments")

ConfigOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional here on 3.11
    typer.Option(
        "--config", "-c", help="YAML config file (default: $UNIINFER_CONFIG or the embedded default)."
    ),
]


def _version(value: bool) -> None:
    if value:
        from uniinfer import __version__

        typer.echo(f"uniinfer {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """One fast, trustworthy gateway to every AI model."""


def _load(path: Path | None) -> Config:
    from uniinfer.config import load_config
    from uniinfer.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc))
    except UnicodeDecodeError:
        _fail(f"cannot read config file {path}: not UTF-8 text")


def _fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` (verbatim: it may quote upstream or config text) and exit."""
    from uniinfer.cli.output import error

    error(message)
    raise typer.Exit(code)


#: uvicorn's log levels (``uvicorn.config.LOG_LEVELS``): a choice, so a typo is a usage error.
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from config: 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default from config: 4000).")] = None,  # noqa: UP045
    log_level: Annotated[
        LogLevel, typer.Option(help="log level (uvicorn's and uniinfer's).", case_sensitive=False)
    ] = "info",
) -> None:
    """Start the OpenAI-compatible gateway."""
    from uniinfer.cli.serve import ListenError, run

    cfg = _with_server_options(_load(config), host=host, port=port)
    try:
        run(cfg, log_level=log_level)
    except ListenError as exc:  # a port in use, a host not this machine's
        _fail(str(exc))
    except Exception as exc:
        from uniinfer.errors import ConfigError, UniInferError

        if isinstance(exc, ConfigError):  # found while building the gateway: say which file
            _fail(f"{cfg.source}: {exc.message}")
        if isinstance(exc, UniInferError):
            _fail(exc.message)
        raise


def _with_server_options(cfg: Config, *, host: str | None, port: int | None) -> Config:
    """``cfg`` with ``--host``/``--port`` applied, checked by the same schema as the file's values.

    ``model_copy`` does not validate, so without this ``--port 99999`` reached
    uvicorn (which then listened on a random port) while the same value in the
    file or ``UNIINFER_SERVER__PORT`` was refused.
    """
    from pydantic import ValidationError

    from uniinfer.config import ServerConfig

    options = {"host": host, "port": port}
    updates = {k: v for k, v in options.items() if v is not None}
    if not updates:
        return cfg
    try:
        server = ServerConfig.model_validate({**cfg.server.model_dump(), **updates})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False):
            name = str(err["loc"][0]) if err["loc"] else ""
            label = f"--{name} {options[name]}" if name in options else f"server.{name}"
            problems.append(f"{label}: {err['msg']}")
        _fail("; ".join(problems))
    return cfg.model_copy(update={"server": server})


@app.command()
def chat(
    model: Annotated[str, typer.Argument(help="Model name: a configured model or provider/model.")],
    prompt: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="One-shot prompt ('-' reads stdin). Omit for an interactive chat."),
    ] = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")] = None,  # noqa: UP045
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature (0-2).")] = None,  # noqa: UP045
    config: ConfigOption = None,
) -> None:
    """Chat with a model, streaming the answer to the terminal."""
    from uniinfer.cli.chat import run_chat

    if prompt == "-":
        prompt = _stdin_prompt(sys.stdin.read())
    if prompt is not None and not prompt.strip():
        _fail("nothing to send: the prompt is empty")
    cfg = _load(config)
    from uniinfer.errors import ConfigError

    try:
        code = run_chat(cfg, model, prompt, system=system, temperature=temperature)
    except ConfigError as exc:  # found while building the gateway: say which file, as serve does
        _fail(f"{cfg.source}: {exc.message}")
    raise typer.Exit(code)


def _stdin_prompt(text: str) -> str:
    """A prompt read from stdin without the line break(s) that end it; inner ones are kept.

    ``echo hi | uniinfer chat m -`` must send "hi", as ``$(...)`` in a shell
    would: the newline is the pipe's, not the user's (and may change what a
    model answers, or a cache key). Blank lines after the text go too; spaces
    on its last line stay, as the user wrote them.
    """
    body = text.rstrip()
    tail = text[len(body) :]  # the whitespace after the last visible character
    return body + tail.split("\n", 1)[0].rstrip("\r")


@app.command()
def models(config: ConfigOption = None) -> None:
    """List the models this gateway serves and which providers are available."""
    import asyncio

    from rich.table import Table

    from uniinfer.cli.output import plain_console

    gateway = _gateway(_load(config))

    async def discover() -> Any:
        try:
            return await gateway.discover_models()
        finally:
            await gateway.aclose()

    table = Table("model", "provider", "available", title="Models")
    reasons = {p.name: p.reason for p in gateway.provider_status() if not p.available}
    for card in asyncio.run(discover()).data:
        table.add_row(card.id, card.owned_by, "yes" if card.available else "no")
        name = card.id.removesuffix("/*")
        if not card.available and name != card.id and name not in reasons:
            reasons[name] = "configured, but its server does not answer"  # a local server not running
    console = plain_console()  # model ids and reasons are upstream text: no markup
    console.print(table)
    if reasons:
        console.print(
            "Unavailable providers: " + ", ".join(f"{name} ({why})" for name, why in reasons.items()),
            soft_wrap=True,
        )


@app.command()
def providers(
    capability: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional here on 3.11
        typer.Option(
            "--capability", help="Only providers declaring this capability (e.g. embeddings, vision)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every provider uniinfer knows: kind, key variable, capabilities, base URL."""
    from uniinfer.providers.catalog_docs import capability_names, kind
    from uniinfer.providers.registry import default_registry

    specs = list(default_registry())
    if capability is not None:
        known = {name for spec in specs for name in spec.capabilities.names()}
        if capability not in known:
            _fail(f"unknown capability '{capability}' (known: {', '.join(sorted(known))})")
        specs = [s for s in specs if capability in s.capabilities.names()]
    if as_json:
        typer.echo(_providers_json(specs))
        return
    from rich.table import Table

    from uniinfer.cli.output import plain_console

    table = Table("provider", "kind", "key variable", "capabilities", "base URL", title="Providers")
    for spec in specs:
        table.add_row(
            spec.name, kind(spec), spec.api_key_env or "-", ", ".join(capability_names(spec)), spec.base_url
        )
    plain_console().print(table)  # plug-in rows are third-party text: no markup


def _providers_json(specs: list[ProviderSpec]) -> str:
    import orjson

    from uniinfer.providers.catalog_docs import kind

    rows = [
        {
            "name": s.name,
            "kind": kind(s),
            "key_variable": s.api_key_env,
            "base_url": s.base_url,
            "capabilities": s.capabilities.names(),
            "docs_url": s.docs_url or None,
        }
        for s in specs
    ]
    return orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()


@config_app.command("validate")
def validate(file: Annotated[Path, typer.Argument(help="The YAML config file to check.")]) -> None:
    """Check a config file: schema, secret references, provider types and keys."""
    cfg = _load(file)
    _gateway(cfg)  # builds every adapter: unknown provider types and missing keys fail here
    typer.echo(
        f"{file}: OK ({len(cfg.providers)} providers: {', '.join(cfg.providers) or 'none'}; "
        f"{len(cfg.models)} models)"
    )


def _gateway(cfg: Config) -> Gateway:
    from uniinfer.errors import ConfigError
    from uniinfer.gateway import Gateway

    try:
        return Gateway(cfg)
    except ConfigError as exc:
        _fail(f"{cfg.source}: {exc.message}")


@route_app.command("explain")
def route_explain(
    request_file: Annotated[
        Path, typer.Argument(help="A chat completion request body (JSON); '-' reads stdin.")
    ],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
) -> None:
    """Show which rule, group and deployments a request would be routed to (nothing is sent)."""
    import orjson

    from uniinfer.errors import UniInferError
    from uniinfer.stages import RequestContext
    from uniinfer.types import ChatRequest
    from uniinfer.validation import parse_request

    raw = _read_input(request_file, "request file")
    gateway = _gateway(_load(config))
    try:
        request = parse_request(ChatRequest, orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        _fail(f"{request_file}: not valid JSON ({exc})")
    except UniInferError as exc:
        _fail(f"{request_file}: {exc.message}")
    try:
        report = gateway.router.explain(request, RequestContext("chat"))
    except UniInferError as exc:
        _fail(exc.message)
    if as_json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(_render_explanation(report))


def _read_input(path: Path, what: str) -> bytes:
    """The bytes of ``path`` ('-': stdin); a missing or unreadable file is a one-line error naming it."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {what} {path}: {exc.strerror or exc}")


def _render_explanation(report: dict[str, object]) -> str:
    features = report["features"]
    assert isinstance(features, dict)
    decision = report["decision"]
    assert isinstance(decision, dict)
    lines = [
        f"model: {report['model']}",
        "features: " + ", ".join(f"{k}={v}" for k, v in features.items()),
        "",
    ]
    rules = report["rules"]
    assert isinstance(rules, list)
    for rule in rules:
        verdict = (
            "MATCH" if rule["name"] == report["matched_rule"] else ("pass" if rule["passed"] else "no match")
        )
        lines.append(f"rule {rule['name']} (priority {rule['priority']}): {verdict}")
        for c in rule["conditions"]:
            mark = "ok  " if c["passed"] else "FAIL"
            lines.append(f"    {mark} {c['condition']}: expected {c['expected']!r}, got {c['actual']!r}")
    if not rules:
        lines.append("no rules configured")
    lines += [
        "",
        f"group: {decision['group']} (strategy {decision['strategy']})"
        + (f", profile {decision['profile']}" if decision["profile"] else "")
        + (
            f", experiment {decision['experiment']} variant {decision['variant']}"
            if decision["experiment"]
            else ""
        ),
        "attempt order: " + (", ".join(report["attempt_order"]) or "(no deployment available)"),  # type: ignore[arg-type]
    ]
    return "\n".join(lines)


@experiments_app.command("report")
def experiments_report(
    name: Annotated[str, typer.Argument(help="The experiment's name.")],
    url: Annotated[str, typer.Option(help="Base URL of the running gateway.")] = "http://127.0.0.1:4000",
    key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Master key (default: $UNIINFER_MASTER_KEY).", envvar="UNIINFER_MASTER_KEY"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON report.")] = False,
) -> None:
    """Per-variant counts, means with 95% CIs and significance tests, from a running gateway."""
    from urllib.parse import quote

    import orjson

    endpoint = f"{_gateway_url(url)}/v1/experiments/{quote(name, safe='')}"
    status, body = _get(endpoint, key)
    if status != 200:
        _fail(_error_message(body, status, endpoint))
    try:
        report = orjson.loads(body)
        text = (
            orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if as_json else _render_report(report)
        )
    except (ValueError, LookupError, TypeError):  # JSONDecodeError is a ValueError
        _fail(f"{endpoint} did not answer with an experiment report: is --url a uniinfer gateway?")
    typer.echo(text)


def _render_report(report: dict[str, Any]) -> str:
    """The server's JSON report as a plain-text table (variants, then tests vs the control)."""

    def ci(value: Any) -> str:
        return f"[{value[0]:.3g}, {value[1]:.3g}]" if value else "-"

    def mean(summary: dict[str, Any]) -> str:
        m = summary["mean"]
        return f"{m:.3g} {ci(summary['ci'])}" if m is not None else "-"

    header = (
        "variant",
        "requests",
        "errors",
        "error rate [95% CI]",
        "latency s",
        "TTFT s",
        "cost total",
        "feedback",
    )
    rows = [header]
    for v in report["variants"]:
        rate = v["error_rate"]
        rows.append(
            (
                v["variant"],
                str(v["requests"]),
                str(v["errors"]),
                f"{rate:.3f} {ci(v['error_rate_ci'])}" if rate is not None else "-",
                mean(v["latency_s"]),
                mean(v["ttft_s"]),
                f"{v['total_cost_usd']:.6f}",
                f"n={v['feedback']['n']} {mean(v['feedback'])}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"experiment {report['experiment']}", ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for comp in report["comparisons"]:
        parts = []
        for test in ("latency", "error_rate", "feedback"):
            result = comp[test]
            if result is None:
                parts.append(f"{test}: too little data")
            else:
                flag = "significant" if result.get("significant") else "not significant"
                parts.append(f"{test}: p={result.get('p_value', float('nan')):.3g} ({flag})")
        lines.append(f"{comp['variant']} vs {comp['control']}: " + "; ".join(parts))
    return "\n".join(lines)


def _gateway_url(url: str) -> str:
    """``--url`` without its trailing slash; anything but an http(s) URL with a host is a clear error."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check (out of range, not a number)
    except ValueError as exc:
        _fail(f"--url {url}: not a valid URL ({exc})")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _fail(f"--url {url}: expected the gateway's http:// or https:// address, e.g. http://127.0.0.1:4000")
    return url.rstrip("/")


def _get(url: str, key: str | None) -> tuple[int, bytes]:
    """A blocking GET (the CLI is not the hot path): status and body; failing to get one is an error."""
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    from uniinfer.outbound_proxy import loopback

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    # a gateway on this machine is reached directly, whatever HTTP_PROXY says: the master key
    # must not go to a proxy (urllib itself has no such rule)
    direct = loopback(urllib.parse.urlsplit(url).hostname or "")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if direct else None
    try:
        with (opener.open if opener else urllib.request.urlopen)(req, timeout=10) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except urllib.error.URLError as exc:
        _fail(f"cannot reach {url}: {exc.reason}")
    except http.client.InvalidURL as exc:
        _fail(f"invalid URL: {exc}")
    except (OSError, http.client.HTTPException) as exc:  # timeouts and broken answers past the connect
        _fail(f"no valid HTTP answer from {url}: {str(exc) or type(exc).__name__}")
    except ValueError:
        # http.client refuses a header with a line break; its message would quote the key
        _fail("the master key (--key or $UNIINFER_MASTER_KEY) contains characters not allowed in a header")


def _error_message(body: bytes, status: int, url: str) -> str:
    import orjson

    try:
        return str(orjson.loads(body)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"HTTP {status} from {url}"
