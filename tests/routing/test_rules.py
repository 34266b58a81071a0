"""Rule matching, explanations and validation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uniinfer.config.routing import RuleConfig, rule_problems
from uniinfer.routing.analyser import Features
from uniinfer.routing.rules import RuleInput, RuleSet

TASKS = ["chat", "code", "extraction", "summarisation", "reasoning", "translation", "creative"]


def features(**overrides: Any) -> Features:
    base: dict[str, Any] = {
        "prompt_tokens": 500,
        "has_images": False,
        "has_tools": False,
        "json_mode": False,
        "has_code": False,
        "language": "en",
        "messages": 2,
        "task": "chat",
    }
    return Features(**(base | overrides))


def ctx(model: str = "uniinfer/auto", **kwargs: Any) -> RuleInput:
    feats = kwargs.pop("features", None) or features()
    return RuleInput(model=model, features=feats, **kwargs)


def rule(name: str, when: dict[str, Any] | None = None, priority: int = 0, to: str = "target") -> RuleConfig:
    return RuleConfig.model_validate(
        {"name": name, "priority": priority, "when": when or {}, "route": {"model": to}}
    )


def matched(when: dict[str, Any], context: RuleInput) -> bool:
    return RuleSet([rule("r", when)]).match(context) is not None


# --- ordering ------------------------------------------------------------------------------


def test_priority_descending_and_stable_for_equals() -> None:
    rules = [rule("a", priority=0), rule("b", priority=5), rule("c", priority=0), rule("d", priority=5)]
    ruleset = RuleSet(rules)
    assert [r.name for r in ruleset.rules] == ["b", "d", "a", "c"]
    assert ruleset.match(ctx()) == rules[1]
    assert len(ruleset) == 4


def test_first_matching_rule_wins_and_no_match_is_none() -> None:
    ruleset = RuleSet([rule("code", {"task": "code"}, to="coder"), rule("big", {"min_prompt_tokens": 1000})])
    assert ruleset.match(ctx(features=features(task="code", prompt_tokens=5000))) is not None
    found = ruleset.match(ctx(features=features(task="code", prompt_tokens=5000)))
    assert found is not None
    assert found.name == "code"
    found = ruleset.match(ctx(features=features(prompt_tokens=5000)))
    assert found is not None
    assert found.name == "big"
    assert ruleset.match(ctx()) is None


def test_empty_rule_set() -> None:
    ruleset = RuleSet([])
    assert not ruleset
    assert ruleset.match(ctx()) is None


def test_empty_when_always_matches() -> None:
    assert matched({}, ctx())


# --- conditions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "hit", "miss"),
    [
        ({"model": "uniinfer/auto"}, ctx(), ctx("gpt")),
        ({"model": ["a", "uniinfer/auto"]}, ctx(), ctx("b")),
        ({"task": "code"}, ctx(features=features(task="code")), ctx()),
        ({"task": ["code", "reasoning"]}, ctx(features=features(task="reasoning")), ctx()),
        ({"language": ["DE", "fr"]}, ctx(features=features(language="de")), ctx()),
        ({"language": "en"}, ctx(), ctx(features=features(language="und"))),
        ({"has_images": True}, ctx(features=features(has_images=True)), ctx()),
        ({"has_images": False}, ctx(), ctx(features=features(has_images=True))),
        ({"has_tools": True}, ctx(features=features(has_tools=True)), ctx()),
        ({"json_mode": True}, ctx(features=features(json_mode=True)), ctx()),
        ({"has_code": False}, ctx(), ctx(features=features(has_code=True))),
        (
            {"metadata": {"tier": "gold"}},
            ctx(metadata={"tier": "gold", "x": "y"}),
            ctx(metadata={"tier": "silver"}),
        ),
        ({"metadata": {"tier": "gold"}}, ctx(metadata={"tier": "gold"}), ctx()),
        ({"headers": {"X-Team": "ml"}}, ctx(headers={"x-team": "ml"}), ctx(headers={"x-team": "web"})),
        ({"caller": {"principal": "key-1"}}, ctx(caller={"principal": "key-1"}), ctx(caller={})),
        (
            {"metadata": {"a": "1", "b": "2"}},
            ctx(metadata={"a": "1", "b": "2"}),
            ctx(metadata={"a": "1", "b": "3"}),
        ),
    ],
)
def test_condition_hits_and_misses(when: dict[str, Any], hit: RuleInput, miss: RuleInput) -> None:
    assert matched(when, hit)
    assert not matched(when, miss)


@pytest.mark.parametrize(
    ("tokens", "expected"), [(99, False), (100, True), (150, True), (200, True), (201, False)]
)
def test_token_bounds_are_inclusive(tokens: int, expected: bool) -> None:
    when = {"min_prompt_tokens": 100, "max_prompt_tokens": 200}
    assert matched(when, ctx(features=features(prompt_tokens=tokens))) is expected


@pytest.mark.parametrize(("messages", "expected"), [(0, False), (1, True), (3, True), (4, False)])
def test_message_bounds_are_inclusive(messages: int, expected: bool) -> None:
    assert (
        matched({"min_messages": 1, "max_messages": 3}, ctx(features=features(messages=messages))) is expected
    )


def test_all_conditions_must_hold() -> None:
    when = {"task": "code", "min_prompt_tokens": 1000, "headers": {"x-tier": "pro"}}
    good = ctx(features=features(task="code", prompt_tokens=2000), headers={"x-tier": "pro"})
    assert matched(when, good)
    assert not matched(when, ctx(features=features(task="code", prompt_tokens=2000)))
    assert not matched(
        when, ctx(features=features(task="chat", prompt_tokens=2000), headers={"x-tier": "pro"})
    )


# --- explain -------------------------------------------------------------------------------


def test_explain_lists_every_rule_and_condition() -> None:
    ruleset = RuleSet(
        [
            rule("fallback", priority=-1, to="cheap"),
            rule("long", {"min_prompt_tokens": 10_000, "language": "en"}, priority=10, to="long-ctx"),
            rule("english", {"language": ["en", "de"]}, to="general"),
        ]
    )
    explanation = ruleset.explain(ctx(features=features(prompt_tokens=800)))
    assert [r.name for r in explanation.rules] == ["long", "english", "fallback"]
    assert [r.index for r in explanation.rules] == [1, 2, 0]
    assert explanation.matched is not None
    assert explanation.matched.name == "english"
    long_rule = explanation.rules[0]
    assert not long_rule.passed
    assert long_rule.reached
    assert [(c.name, c.expected, c.actual, c.passed) for c in long_rule.conditions] == [
        ("language", "en", "en", True),
        ("min_prompt_tokens", 10_000, 800, False),
    ]
    fallback = explanation.rules[2]
    assert fallback.passed
    assert not fallback.reached
    assert fallback.conditions == []


def test_explanation_serialises() -> None:
    ruleset = RuleSet(
        [rule("team", {"headers": {"x-team": "ml"}}, to="ml-models"), rule("rest", to="default")]
    )
    explanation = ruleset.explain(ctx(headers={"x-team": "web"}))
    data = json.loads(json.dumps(explanation.to_dict()))
    assert data["matched"] == "rest"
    assert data["features"]["language"] == "en"
    assert data["rules"][0]["conditions"] == [
        {"condition": "headers.x-team", "expected": "ml", "actual": "web", "passed": False}
    ]
    assert data["rules"][1]["route"] == {"model": "default"}


conditions_st = st.fixed_dictionaries(
    {},
    optional={
        "task": st.sampled_from(TASKS) | st.lists(st.sampled_from(TASKS), min_size=1, max_size=3),
        "min_prompt_tokens": st.integers(0, 3000),
        "max_prompt_tokens": st.integers(0, 3000),
        "has_code": st.booleans(),
        "has_images": st.booleans(),
        "language": st.sampled_from(["en", "de", "und"]),
        "metadata": st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"]), max_size=2),
    },
)
features_st = st.builds(
    features,
    prompt_tokens=st.integers(0, 3000),
    has_code=st.booleans(),
    has_images=st.booleans(),
    task=st.sampled_from(TASKS),
    language=st.sampled_from(["en", "de", "und"]),
)


@given(
    st.lists(st.tuples(conditions_st, st.integers(-2, 2)), max_size=6),
    features_st,
    st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"])),
)
def test_explain_agrees_with_match(
    specs: list[tuple[dict[str, Any], int]], feats: Features, metadata: dict[str, str]
) -> None:
    ruleset = RuleSet([rule(f"r{i}", when, priority) for i, (when, priority) in enumerate(specs)])
    context = ctx(features=feats, metadata=metadata)
    found = ruleset.match(context)
    explanation = ruleset.explain(context)
    assert (explanation.matched.name if explanation.matched else None) == (found.name if found else None)
    for result in explanation.rules:
        assert result.passed == all(c.passed for c in result.conditions)


# --- validation ----------------------------------------------------------------------------


def test_valid_rules_have_no_problems() -> None:
    assert (
        rule_problems(
            [rule("a", {"min_prompt_tokens": 5, "max_prompt_tokens": 5}), rule("b", {"model": ["x"]})]
        )
        == []
    )


@pytest.mark.parametrize(
    ("when", "key", "message"),
    [
        (
            {"min_prompt_tokens": 5000, "max_prompt_tokens": 100},
            "min_prompt_tokens",
            "5000 is greater than max_prompt_tokens (100)",
        ),
        ({"min_messages": 3, "max_messages": 2}, "min_messages", "3 is greater than max_messages (2)"),
        ({"model": []}, "model", "an empty list"),
        ({"task": []}, "task", "an empty list"),
        ({"language": []}, "language", "an empty list"),
    ],
)
def test_contradictions_name_the_rule_and_its_key(when: dict[str, Any], key: str, message: str) -> None:
    [(path, problem)] = rule_problems([rule("ok"), rule("broken", when)])
    assert path == ("routing", "rules", "1", "when", key)
    assert problem.startswith(message)
    assert "rule 'broken' can never match" in problem


def test_duplicate_names_are_rejected() -> None:
    [(path, problem)] = rule_problems([rule("a"), rule("b"), rule("a")])
    assert path == ("routing", "rules", "2", "name")
    assert problem == "'a' is already the name of routing.rules.0"


# --- what matching needs --------------------------------------------------------------------


def test_rules_scoped_to_model_names_apply_only_to_those_names() -> None:
    ruleset = RuleSet(
        [rule("auto-code", {"task": "code", "model": "uniinfer/auto"}), rule("b", {"model": ["x", "y"]})]
    )
    assert ruleset.applies_to("uniinfer/auto")
    assert ruleset.applies_to("y")
    assert not ruleset.applies_to("general")
    # one rule without a model condition may match any name
    assert RuleSet([rule("a", {"model": "x"}), rule("any", {"headers": {"x-tier": "gold"}})]).applies_to("z")
    assert not RuleSet([]).applies_to("z")


def test_only_feature_conditions_need_the_analyser() -> None:
    identity = RuleSet(
        [rule("gold", {"headers": {"X-Tier": "gold"}, "model": "m", "caller": {"principal": "p"}})]
    )
    assert not identity.needs_features
    # matched without features at all
    hit = RuleInput(model="m", features=None, headers={"x-tier": "gold"}, caller={"principal": "p"})
    assert identity.match(hit) is not None
    for when in (
        {"task": "code"},
        {"language": "en"},
        {"max_messages": 3},
        {"min_prompt_tokens": 1},
        {"has_code": True},
    ):
        assert RuleSet([rule("a"), rule("f", when)]).needs_features, when


def test_explain_needs_features() -> None:
    with pytest.raises(ValueError, match="features"):
        RuleSet([rule("a")]).explain(RuleInput(model="m", features=None))
