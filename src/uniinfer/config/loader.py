"""Loading a :class:`Config`: YAML file, ``UNIINFER_*`` overrides, secret references.

Order: the file (or the embedded default), then environment overrides
``UNIINFER_<SECTION>__<KEY>[__<KEY>...]`` (values parsed as YAML scalars, so
``true`` and ``8080`` are typed), then validation. Errors name the key, the
file and, for file keys, the line and column.

Secret fields (``api_key``, ``master_key``) take a reference:

- ``env:NAME``  the environment variable NAME (missing: an error naming it)
- ``file:PATH`` the file's content, stripped (a mounted Kubernetes secret)

A literal string is accepted too, but a reference keeps keys out of files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from uniinfer.config.schema import Config, RefError
from uniinfer.errors import ConfigError

__all__ = ["ENV_PREFIX", "default_config", "load_config", "parse_config", "resolve_secret"]

ENV_PREFIX = "UNIINFER_"
_SECRET_KEYS = ("api_key", "master_key")
#: UNIINFER_* variables that are not config overrides.
_NOT_OVERRIDES = frozenset({"UNIINFER_CONFIG", "UNIINFER_REQUIRE_SERVICES"})


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load ``path`` (or ``$UNIINFER_CONFIG``, or the embedded default) with overrides."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get("UNIINFER_CONFIG") or None
    if path is None:
        return default_config(env)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    return parse_config(text, source=str(path), env=env)


def parse_config(text: str, *, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    marks = _marks(node)
    _apply_overrides(data, env)
    _resolve_secrets(data, env, source)
    return _validate(data, source, marks)


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The embedded default: built-in providers whose key is in the environment, and local servers."""
    from uniinfer.providers.registry import default_registry

    env = os.environ if env is None else env
    providers: dict[str, Any] = {}
    for spec in default_registry().specs.values():
        if not spec.auto_enable:
            continue
        if spec.api_key_env and env.get(spec.api_key_env):
            providers[spec.name] = {"api_key": f"env:{spec.api_key_env}"}
        elif spec.local:
            providers[spec.name] = {}
    data: dict[str, Any] = {"providers": providers}
    _apply_overrides(data, env)
    _resolve_secrets(data, env, "embedded default")
    return _validate(data, "embedded default", {})


def resolve_secret(value: str, env: Mapping[str, str], where: str) -> str:
    """The value behind ``env:NAME`` / ``file:PATH``; literals pass through."""
    if value.startswith("env:"):
        name = value[4:]
        secret = env.get(name)
        if not secret:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return secret
    if value.startswith("file:"):
        try:
            return Path(value[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read secret file {value[5:]}: {exc.strerror}") from exc
    return value


def _resolve_secrets(data: dict[str, Any], env: Mapping[str, str], source: str) -> None:
    server = data.get("server")
    if isinstance(server, dict) and isinstance(server.get("master_key"), str):
        server["master_key"] = resolve_secret(server["master_key"], env, f"{source}: server.master_key")
    providers = data.get("providers")
    if not isinstance(providers, dict):
        return
    for name, entry in providers.items():
        if entry is None:
            entry = providers[name] = {}
        if not isinstance(entry, dict):
            continue
        options = entry.get("options")
        if isinstance(options, dict):
            for key, value in options.items():
                if isinstance(value, str) and value.startswith(("env:", "file:")):
                    options[key] = resolve_secret(value, env, f"{source}: providers.{name}.options.{key}")
        where = f"{source}: providers.{name}.api_key"
        if isinstance(entry.get("api_key"), str):
            entry["api_key"] = resolve_secret(entry["api_key"], env, where)
        elif "api_key" not in entry:
            _conventional_key(name, entry, env, where)


def _conventional_key(name: str, entry: dict[str, Any], env: Mapping[str, str], where: str) -> None:
    """No ``api_key`` given: use the provider's conventional variable, or explain what is missing."""
    from uniinfer.providers.registry import default_registry

    registry = default_registry()
    kind = entry.get("type") or name
    if not isinstance(kind, str) or kind not in registry:
        return  # the schema check reports the unknown type
    spec = registry.get(kind)
    if spec.api_key_env and env.get(spec.api_key_env):
        entry["api_key"] = env[spec.api_key_env]
    elif spec.key_required:
        hint = f"set {spec.api_key_env} or " if spec.api_key_env else ""
        raise ConfigError(f"{where}: provider '{name}' needs an API key: {hint}set providers.{name}.api_key")


def _apply_overrides(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var in _NOT_OVERRIDES or "__" not in var:
            continue
        path = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            raise ConfigError(f"environment override {var}: empty key in the path")
        target = data
        for key in path[:-1]:
            nxt = target.setdefault(key, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"environment override {var}: '{key}' is not a section")
            target = nxt
        leaf = path[-1]
        target[leaf] = raw if leaf in _SECRET_KEYS else yaml.safe_load(raw)


def _validate(data: dict[str, Any], source: str, marks: dict[tuple[str, ...], str]) -> Config:
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        lines = [_describe(err, marks) for err in exc.errors(include_input=False)]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines)) from None


def _describe(err: Any, marks: dict[tuple[str, ...], str]) -> str:
    loc = tuple(str(p) for p in err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, RefError):
        # a cross-reference check: the message already names its key
        where = _nearest_mark(cause.path, marks)
        return f"  {where}: {cause}" if where else f"  {cause}"
    key = ".".join(loc) or "(top level)"
    where = _nearest_mark(loc, marks)
    prefix = f"  {where}: " if where else "  "
    if err["type"] == "extra_forbidden":
        return f"{prefix}{key}: unknown key"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{prefix}{key}: {message}"


def _nearest_mark(loc: tuple[str, ...], marks: dict[tuple[str, ...], str]) -> str:
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return ""


def _marks(node: yaml.Node | None) -> dict[tuple[str, ...], str]:
    """Line:column of every key in the YAML document, by its path."""
    out: dict[tuple[str, ...], str] = {}

    def walk(n: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key_path = (*path, str(key_node.value))
                out[key_path] = (
                    f"line {key_node.start_mark.line + 1}, column {key_node.start_mark.column + 1}"
                )
                walk(value_node, key_path)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                item_path = (*path, str(i))
                out[item_path] = f"line {item.start_mark.line + 1}, column {item.start_mark.column + 1}"
                walk(item, item_path)

    if node is not None:
        walk(node, ())
    return out
