"""``run --pull missing|always|never``: make sure the daemon has the image, as ``docker run --pull``.

- ``missing`` (the default, Docker's too): pull only when the daemon does not have the image;
- ``always``: pull every time (a newer image under the same tag replaces the old one);
- ``never``: never pull; an image the daemon lacks is refused.

A pull that fails is one line with the registry's own reason (exit 1). It happens before anything
of the group exists, so nothing is left behind. An image named without a tag means ``:latest``
(docker-py would otherwise pull every tag of the repository).
"""

from __future__ import annotations

import sys

from tesson.errors import TessonError

POLICIES = ("missing", "always", "never")


def _has(client, image: str) -> bool:
    from tesson.docker_client import explain, is_status

    try:
        client.inspect_image(image)
        return True
    except Exception as e:
        if is_status(e, 404):
            return False
        raise TessonError(f"cannot inspect image {image!r}: {explain(e)}") from None


def pull(client, image: str) -> None:
    """Pull ``image``; TessonError with the registry's reason when it cannot be pulled."""
    from docker.utils import parse_repository_tag

    from tesson.docker_client import explain

    repo, tag = parse_repository_tag(image)
    tty = sys.stderr.isatty()
    if tty:
        sys.stderr.write(f"pulling {image} ...")
        sys.stderr.flush()
    reason = None
    try:
        for event in client.pull(repo, tag=tag or "latest", stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                reason = event.get("errorDetail", {}).get("message") or event["error"]
    except Exception as e:
        reason = explain(e)
    finally:
        if tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
    if reason is not None:
        raise TessonError(f"cannot pull image {image!r}: {' '.join(str(reason).split())}")


def ensure_image(client, image: str, policy: str = "missing") -> None:
    """Have ``image`` on the daemon according to ``policy`` (one of :data:`POLICIES`)."""
    if policy == "always":
        pull(client, image)
    elif _has(client, image):
        return
    elif policy == "never":
        raise TessonError(
            f"image {image!r} is not on the Docker daemon and --pull never forbids pulling it "
            f"(docker pull or build it first, or use --pull missing)"
        )
    else:
        pull(client, image)
    if not _has(client, image):  # a registry that answered but sent nothing under that name
        raise TessonError(f"cannot pull image {image!r}: the daemon does not have it after the pull")
