"""Names Docker sees: group names, and the container and network names made from them.

A group ``GROUP`` has shards ``GROUP-0`` ... ``GROUP-N-1``, its balancer ``GROUP-lb`` (or, with
Gorb in dr mode, its VIP agent ``GROUP-vip``) and its network ``tesson-GROUP``; after a ``scale`` or ``update`` also its spec record ``GROUP-spec.GEN``,
while one runs its lock ``GROUP-lock``, and during a rolling step the replaced shard's previous
container ``GROUP-INDEX.prev``. The default group name is made from the image name.
"""

from __future__ import annotations

import re

from tesson.errors import UsageError

# Docker's own rule for container names (daemon/names: RestrictedNamePattern).
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# Room for the "-lb" / "-NNNN" suffixes and the "tesson-" network prefix within sane lengths.
MAX_GROUP_LEN = 63
NETWORK_PREFIX = "tesson-"


def validate_group(name: str) -> str:
    if not NAME_RE.match(name) or len(name) > MAX_GROUP_LEN:
        raise UsageError(
            f"invalid group name {name!r}: use letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit, at most {MAX_GROUP_LEN} characters"
        )
    return name


def group_from_image(image: str) -> str:
    """``registry:5000/org/web:1.2`` -> ``web-1.2``; ``nginx`` -> ``nginx``; digests are dropped."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    repo, _, tag = last.partition(":")
    name = f"{repo}-{tag}" if tag and tag != "latest" else repo
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name)
    name = re.sub(r"^[^a-zA-Z0-9]+", "", name)[:MAX_GROUP_LEN].rstrip("-.") or "tesson"
    return name


def shard_name(group: str, index: int) -> str:
    """``GROUP-INDEX``: the container of one shard."""
    return f"{group}-{index}"


def lb_name(group: str) -> str:
    """``GROUP-lb``: the embedded balancer's container."""
    return f"{group}-lb"


def vip_agent_name(group: str) -> str:
    """``GROUP-vip``: a Gorb dr group's VIP agent (tesson.frontend.vip_agentctl)."""
    return f"{group}-vip"


def network_name(group: str) -> str:
    """``tesson-GROUP``: the network the balancer and the shards share."""
    return NETWORK_PREFIX + group


def previous_name(group: str, index: int) -> str:
    """``GROUP-INDEX.prev``: a shard's previous container, kept while its successor proves healthy."""
    return f"{group}-{index}.prev"


def spec_name(group: str, generation: int) -> str:
    """``GROUP-spec.GEN``: the group's spec record of one generation (see :mod:`tesson.runtime.record`)."""
    return f"{group}-spec.{generation}"


def lock_name(group: str) -> str:
    """``GROUP-lock``: held while a ``scale`` or ``update`` of the group runs."""
    return f"{group}-lock"
