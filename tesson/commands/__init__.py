"""One module per verb; each has ``main(args) -> int``."""
