"""``uniinfer serve | chat | models | providers | config validate | --version``.

Commands import what they need inside their bodies, so ``uniinfer --help``
and ``uniinfer serve`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from uniinfer.config import Config
    from uniinfer.gateway import Gateway

app = typer.Typer(
    name="uniinfer",
    help="One fast, trustworthy gateway to every AI model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

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


def _fail(message: str, code: int = 1) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from config: 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default from config: 4000).")] = None,  # noqa: UP045
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Start the OpenAI-compatible gateway."""
    from uniinfer.cli.serve import run

    cfg = _load(config)
    updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if updates:
        cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update=updates)})
    try:
        run(cfg, log_level=log_level)
    except Exception as exc:
        from uniinfer.errors import UniInferError

        if isinstance(exc, UniInferError):
            _fail(exc.message)
        raise


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

    cfg = _load(config)
    if prompt == "-":
        prompt = sys.stdin.read()
    code = run_chat(cfg, model, prompt, system=system, temperature=temperature)
    raise typer.Exit(code)


@app.command()
def models(config: ConfigOption = None) -> None:
    """List the models this gateway serves and which providers are available."""
    from rich.console import Console
    from rich.table import Table

    gateway = _gateway(_load(config))
    table = Table("model", "provider", "available", title="Models")
    for card in gateway.list_models().data:
        table.add_row(card.id, card.owned_by, "yes" if card.available else "no")
    Console().print(table)
    reasons = [p for p in gateway.provider_status() if not p.available]
    if reasons:
        Console().print("Unavailable providers: " + ", ".join(f"{p.name} ({p.reason})" for p in reasons))


@app.command()
def providers() -> None:
    """List every provider uniinfer knows, with its capabilities."""
    from rich.console import Console
    from rich.table import Table

    from uniinfer.providers.registry import default_registry

    table = Table("provider", "key variable", "base URL", "capabilities", title="Providers")
    for spec in default_registry():
        table.add_row(spec.name, spec.api_key_env or "-", spec.base_url, ", ".join(spec.capabilities.names()))
    Console().print(table)


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
