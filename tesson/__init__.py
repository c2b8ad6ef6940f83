"""tesson: shard a containerised app across a machine's hardware.

The version and the default image are written here alone: pyproject reads ``__version__``,
scripts/build-image tags and labels the image from both, and the `docker tesson` shim carries a copy
generated from this package (``make shim-grammar``; a test fails when the copy is stale).
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# The tesson image: the tool, every group's embedded balancer, and the demo shard.
IMAGE_ENV = "TESSON_IMAGE"
DEFAULT_IMAGE = "tesson:latest"


def default_image() -> str:
    """The tesson image to use: ``$TESSON_IMAGE``, else ``tesson:latest``."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
