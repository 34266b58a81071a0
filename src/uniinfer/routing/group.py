"""What a routing decision is made of: deployments (targets), groups of them, and a decision.

Plain values built once at start-up by :class:`~uniinfer.routing.router.Router`
(a member carries its deployment's live :class:`~uniinfer.routing.state.DeploymentState`
and its timeouts, prepared so a first attempt builds nothing per request).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from uniinfer.config import Deployment
from uniinfer.config.routing import GroupFallbacks, RetryConfig, Strategy
from uniinfer.http import Timeouts
from uniinfer.providers.base import ProviderAdapter
from uniinfer.routing.analyser import Features
from uniinfer.routing.state import DeploymentState

__all__ = ["Decision", "Group", "Member", "Target", "cut_timeouts"]

#: A first attempt starts within this many seconds of its request: it uses timeouts cut
#: to the whole deadline, prepared once (aiohttp rounds timeouts above 5 s up to whole
#: seconds anyway).
_FIRST_ATTEMPT_SLACK = 0.005


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment: a configured provider's adapter and the upstream model name."""

    provider: str
    model: str
    adapter: ProviderAdapter
    #: ``provider/model``, the deployment's name in state, metrics and headers.
    label: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"{self.provider}/{self.model}")


@dataclass(frozen=True, slots=True)
class Member:
    """A deployment inside a group, with what the router knows about it."""

    index: int
    target: Target
    state: DeploymentState
    timeouts: Timeouts
    config: Deployment | None = None
    #: Share of traffic under ``weighted``.
    weight: float = 1.0
    #: Estimated USD of a typical request (``lowest_cost``); None: unpriced.
    cost: float | None = None
    #: The group's retry deadline, and ``timeouts`` cut to it for a request's first
    #: attempt (without and with streaming): built once, not per request.
    deadline: float = float("inf")
    first: Timeouts | None = None
    first_stream: Timeouts | None = None

    def timeouts_for(self, remaining: float, stream: bool) -> Timeouts:
        """The timeouts of an attempt with ``remaining`` seconds left of the request's deadline."""
        if remaining >= self.deadline - _FIRST_ATTEMPT_SLACK:
            first = self.first_stream if stream else self.first
            if first is not None:
                return first
        return cut_timeouts(self.timeouts, remaining, stream)


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    members: tuple[Member, ...]
    strategy: Strategy = "priority"
    fallbacks: GroupFallbacks = field(default_factory=GroupFallbacks)
    retry: RetryConfig = field(default_factory=RetryConfig)


@dataclass(slots=True)
class Decision:
    group: Group
    rule: str | None = None
    profile: str | None = None
    experiment: str | None = None
    variant: str | None = None
    features: Features | None = None


def cut_timeouts(t: Timeouts, remaining: float, stream: bool) -> Timeouts:
    """The deployment's timeouts, cut to the request's remaining deadline when that is shorter.

    The same object is returned when nothing is cut (the HTTP client caches per object).
    A stream keeps its total and its ``read``: a long answer may outlive the deadline once it
    has started, so the deadline bounds the wait for its response head (``head``) instead.
    """
    if t.connect <= remaining and t.read <= remaining and (stream or t.total <= remaining):
        return t
    if stream:
        return Timeouts(min(t.connect, remaining), t.read, t.total, head=min(t.read, remaining))
    return Timeouts(min(t.connect, remaining), min(t.read, remaining), min(t.total, remaining))
