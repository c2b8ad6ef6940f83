"""tesson: shard a containerised app across a machine's hardware."""

__version__ = "0.1.0"
