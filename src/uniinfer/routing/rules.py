"""Routing rules: the first rule (by priority) whose conditions all hold routes the request.

:class:`RuleSet` compiles the configured :class:`~uniinfer.config.routing.RuleConfig`
list once — sorted by priority, highest first, file order kept among equals —
into flat lists of condition checks, so :meth:`RuleSet.match` is a few
attribute reads and comparisons per rule. :meth:`RuleSet.explain` evaluates
every condition of every rule and says why each passed or failed (for
``uniinfer route explain`` and ``POST /v1/route/explain``). Rules that can never
match are refused with the configuration (:func:`~uniinfer.config.routing.rule_problems`).

Condition semantics (``None`` or an empty mapping means "not tested"):

* ``model``, ``task``, ``language``: a value or a list of values, any of which
  may match (languages compare case-insensitively);
* ``min_*`` / ``max_*``: inclusive bounds on ``prompt_tokens`` and ``messages``;
* ``has_images``, ``has_tools``, ``json_mode``, ``has_code``: equality;
* ``metadata``, ``headers``, ``caller``: every given key must be present with
  exactly that value (header names compare lower-cased).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from uniinfer.config.routing import RuleConditions, RuleConfig
from uniinfer.routing.analyser import Features

__all__ = ["ConditionResult", "Explanation", "RuleInput", "RuleResult", "RuleSet"]


@dataclass(frozen=True, slots=True)
class RuleInput:
    """What rules are evaluated against."""

    #: The model name the caller asked for (``uniinfer/auto``, a group, ``profile:x``...).
    model: str
    #: The request's features; ``None`` when no rule tests one (see :attr:`RuleSet.needs_features`).
    features: Features | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Request headers, names lower-cased.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Caller identity fields (``principal``, ...).
    caller: Mapping[str, str] = field(default_factory=dict)
    #: Whether the request is a chat. An embedding request is matched only by rules that name
    #: its model (a rule for any model was written for chats: it would send vectors to a chat
    #: model), and not by one that tests a feature or ``metadata``, which it has none of.
    chat: bool = True


@dataclass(frozen=True, slots=True)
class _Condition:
    name: str
    expected: Any
    actual: Callable[[RuleInput], Any]
    test: Callable[[Any], bool]
    #: Reads the request analyser's features (so the analyser must run).
    uses_features: bool = False
    #: Tests what only a chat request has (its features, its ``metadata``).
    chat_only: bool = False


# --- compiling conditions -----------------------------------------------------------------


def _any_of(value: str | Sequence[str], *, fold: bool = False) -> frozenset[str]:
    values = [value] if isinstance(value, str) else value
    return frozenset(v.lower() for v in values) if fold else frozenset(values)


def _compile(when: RuleConditions) -> tuple[_Condition, ...]:
    conditions: list[_Condition] = []
    if when.model is not None:
        conditions.append(
            _Condition("model", when.model, lambda c: c.model, _any_of(when.model).__contains__)
        )
    if when.task is not None:
        tasks = _any_of(when.task).__contains__
        conditions.append(_Condition("task", when.task, _feature("task"), tasks, uses_features=True))
    if when.language is not None:
        languages = _any_of(when.language, fold=True).__contains__
        conditions.append(
            _Condition("language", when.language, _feature("language"), languages, uses_features=True)
        )
    conditions += _bounds("prompt_tokens", when.min_prompt_tokens, when.max_prompt_tokens)
    conditions += _bounds("messages", when.min_messages, when.max_messages)
    for flag in ("has_images", "has_tools", "json_mode", "has_code"):
        expected = getattr(when, flag)
        if expected is not None:
            conditions.append(_equals(flag, expected, _feature(flag), uses_features=True))
    conditions += _entries("metadata", when.metadata, lambda c: c.metadata)
    headers = {k.lower(): v for k, v in when.headers.items()}
    conditions += _entries("headers", headers, lambda c: c.headers)
    conditions += _entries("caller", when.caller, lambda c: c.caller)
    return tuple(
        dataclasses.replace(c, chat_only=True) if c.uses_features or c.name.startswith("metadata.") else c
        for c in conditions
    )


def _feature(name: str) -> Callable[[RuleInput], Any]:
    # features are present whenever a rule tests one (RuleSet.needs_features)
    return lambda c: getattr(c.features, name)


def _equals(
    name: str, expected: Any, actual: Callable[[RuleInput], Any], *, uses_features: bool = False
) -> _Condition:
    return _Condition(name, expected, actual, lambda value: value == expected, uses_features)


def _bounds(feature: str, low: int | None, high: int | None) -> list[_Condition]:
    actual = _feature(feature)
    out: list[_Condition] = []
    if low is not None:
        out.append(_Condition(f"min_{feature}", low, actual, lambda value: value >= low, uses_features=True))
    if high is not None:
        out.append(
            _Condition(f"max_{feature}", high, actual, lambda value: value <= high, uses_features=True)
        )
    return out


def _entries(
    kind: str, expected: Mapping[str, str], source: Callable[[RuleInput], Mapping[str, str]]
) -> list[_Condition]:
    return [_equals(f"{kind}.{key}", value, _lookup(source, key)) for key, value in expected.items()]


def _lookup(source: Callable[[RuleInput], Mapping[str, str]], key: str) -> Callable[[RuleInput], str | None]:
    return lambda c: source(c).get(key)


# --- the rule set -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    index: int
    config: RuleConfig
    conditions: tuple[_Condition, ...]


class RuleSet:
    """Rules in evaluation order (priority descending, stable), compiled for fast matching."""

    __slots__ = ("_models", "_rules", "needs_features")

    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        order = sorted(range(len(rules)), key=lambda i: -rules[i].priority)
        self._rules = tuple(_Rule(i, rules[i], _compile(rules[i].when)) for i in order)
        #: Whether some rule tests a feature of the request, so matching needs the analyser.
        self.needs_features = any(c.uses_features for rule in self._rules for c in rule.conditions)
        # The model names some rule may match; None when a rule tests no model name (any may).
        names: set[str] = set()
        for rule in self._rules:
            model = rule.config.when.model
            if model is None:
                self._models: frozenset[str] | None = None
                break
            names |= _any_of(model)
        else:
            self._models = frozenset(names)

    def __len__(self) -> int:
        return len(self._rules)

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def rules(self) -> tuple[RuleConfig, ...]:
        """The rules in evaluation order."""
        return tuple(rule.config for rule in self._rules)

    def applies_to(self, model: str) -> bool:
        """Whether any rule may match a request for ``model`` (else matching can be skipped)."""
        return self._models is None or model in self._models

    def match(self, ctx: RuleInput) -> RuleConfig | None:
        """The first rule whose conditions all hold, or ``None``."""
        for rule in self._rules:
            if not ctx.chat and rule.config.when.model is None:
                continue  # an embedding request: only rules that name its model (see RuleInput.chat)
            for cond in rule.conditions:
                if (cond.chat_only and not ctx.chat) or not cond.test(cond.actual(ctx)):
                    break
            else:
                return rule.config
        return None

    def explain(self, ctx: RuleInput) -> Explanation:
        """Every rule in evaluation order with each condition's outcome, and the rule that matched."""
        features = ctx.features
        if features is None:
            raise ValueError("explain() needs the request's features in RuleInput.features")
        results: list[RuleResult] = []
        matched: RuleResult | None = None
        for rule in self._rules:
            conditions = []
            for cond in rule.conditions:
                actual = cond.actual(ctx)
                conditions.append(ConditionResult(cond.name, cond.expected, actual, cond.test(actual)))
            result = RuleResult(
                index=rule.index,
                name=rule.config.name,
                priority=rule.config.priority,
                route=rule.config.route.model_dump(exclude_none=True),
                conditions=conditions,
                passed=all(c.passed for c in conditions),
                reached=matched is None,
            )
            if matched is None and result.passed:
                matched = result
            results.append(result)
        return Explanation(model=ctx.model, features=features, rules=results, matched=matched)


# --- explanations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConditionResult:
    name: str
    expected: Any
    actual: Any
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": self.name,
            "expected": self.expected,
            "actual": self.actual,
            "passed": self.passed,
        }


@dataclass(frozen=True, slots=True)
class RuleResult:
    #: Position of the rule in the configuration file (``routing.rules[index]``).
    index: int
    name: str
    priority: int
    route: dict[str, str]
    conditions: list[ConditionResult]
    #: All conditions hold (an empty ``when`` always passes).
    passed: bool
    #: ``False`` for rules after the matching one: :meth:`RuleSet.match` never looks at them.
    reached: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "priority": self.priority,
            "route": self.route,
            "passed": self.passed,
            "reached": self.reached,
            "conditions": [c.to_dict() for c in self.conditions],
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    model: str
    features: Features
    #: Every rule, in evaluation order.
    rules: list[RuleResult]
    #: The rule that routes the request (the first that passed), or ``None``.
    matched: RuleResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "features": self.features.to_dict(),
            "matched": self.matched.name if self.matched is not None else None,
            "rules": [r.to_dict() for r in self.rules],
        }
