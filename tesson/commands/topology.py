"""tesson topology."""

from tesson.errors import NotBuiltYet


def main(args) -> int:
    raise NotBuiltYet("'topology' is not built yet in this version of tesson")
