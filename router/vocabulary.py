"""The names a policy may use, from the connector registries: channels and agents' tool kinds."""

from __future__ import annotations

from collections.abc import Collection

from connectors.registry import CHANNELS, TOOLS
from processors.policy.model import Vocabulary
from processors.policy.reach import Reach

__all__ = ["VOCABULARY", "reach", "vocabulary"]


def reach(running: Collection[str] | None = None) -> Reach:
    """Who each running channel's replies reach (every registered channel when `running` is None).

    The same rule the senders follow (router/channels.py): a channel with a sender of its
    own answers the identity kinds it `addresses` (the contract suite checks those cover
    the senders it parses); one without answers through the first running `reply_via`
    channel that addresses the customer's identity kind.
    """
    names = set(CHANNELS) if running is None else set(running) & set(CHANNELS)
    senders = {name for name in names if CHANNELS[name].outbound is not None}
    kinds: dict[str, frozenset[str]] = {}
    via: dict[str, tuple[str, ...]] = {}
    for name in sorted(names):
        spec = CHANNELS[name]
        if name in senders:
            kinds[name], via[name] = spec.addresses, (name,)
        elif through := tuple(v for v in spec.reply_via if v in senders):
            kinds[name] = frozenset().union(*(CHANNELS[v].addresses for v in through))
            via[name] = through
    return Reach(kinds, via)


def vocabulary(running: Collection[str] | None = None) -> Vocabulary:
    """The registries as they are now: every registered channel and tool kind, and who is reached."""
    return Vocabulary(channels=frozenset(CHANNELS),
                      tools={kind: spec.destination for kind, spec in TOOLS.items()},
                      reply_modes={name: spec.reply_modes for name, spec in CHANNELS.items()},
                      reach=reach(running))


# the registries as shipped, for callers that load a policy once
VOCABULARY = vocabulary()
