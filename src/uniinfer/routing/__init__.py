"""Request routing: deciding which deployment serves a request, and learning from the outcome.

The router (:mod:`~uniinfer.routing.router`) combines pure building blocks:
:mod:`~uniinfer.routing.analyser` turns a request into
:class:`~uniinfer.routing.analyser.Features`, :mod:`~uniinfer.routing.rules`
matches them against the configured rules, :mod:`~uniinfer.routing.experiments`
assigns A/B variants and aggregates their outcomes with
:mod:`~uniinfer.routing.stats`, and strategies, circuit breakers and retry
policies pick among a group's deployments (the values a decision is made of,
targets, members and groups, are in :mod:`~uniinfer.routing.group`). Nothing
is imported here, so each module loads only what it needs.
"""
