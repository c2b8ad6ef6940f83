"""Group names: what Docker accepts as a container name, and the default made from an image."""

from __future__ import annotations

import re

from tesson.errors import UsageError

# Docker's own rule for container names (daemon/names: RestrictedNamePattern).
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# Room for the "-lb" / "-NNNN" suffixes and the "tesson-" network prefix within sane lengths.
MAX_GROUP_LEN = 63


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
