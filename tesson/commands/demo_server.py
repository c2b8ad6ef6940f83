"""tesson demo-server."""

from tesson.errors import NotBuiltYet


def main(args) -> int:
    raise NotBuiltYet("'demo-server' is not built yet in this version of tesson")
