"""tesson repair."""

from tesson.errors import NotBuiltYet


def main(args) -> int:
    raise NotBuiltYet("'repair' is not built yet in this version of tesson")
