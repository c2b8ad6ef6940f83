"""tesson ps."""

from tesson.errors import NotBuiltYet


def main(args) -> int:
    raise NotBuiltYet("'ps' is not built yet in this version of tesson")
