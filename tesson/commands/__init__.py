"""One module per verb; each has ``main(args) -> int``."""


def find_group(args, missing: str):
    """Connect to the daemon and rebuild ``args.group`` from its labels: ``(client, group)``.

    A group that does not exist is a failure (exit 1) whose message ends with ``missing``."""
    from tesson import docker_client, names, runtime
    from tesson import group as G
    from tesson.errors import TessonError

    name = names.validate_group(args.group)
    client = docker_client.connect(workers=runtime.MAX_WORKERS)
    grp = G.find(client, name)
    if grp is None:
        raise TessonError(f"no group named {name!r}{missing}")
    return client, grp
