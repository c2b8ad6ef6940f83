"""tesson stop."""

from tesson.errors import NotBuiltYet


def main(args) -> int:
    raise NotBuiltYet("'stop' is not built yet in this version of tesson")
