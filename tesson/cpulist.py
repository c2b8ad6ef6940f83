"""The kernel's cpulist format ("0-3,8,10-11"), used by sysfs, cpusets and Docker's --cpuset-cpus."""

from __future__ import annotations

from typing import Iterable


def parse(text: str) -> list[int]:
    """Parse a cpulist such as ``"0-3,8"`` into a sorted list of ints; ``""`` is the empty list."""
    ids: set[int] = set()
    text = text.strip()
    if not text:
        return []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep:
            start, end = int(lo), int(hi)
            if end < start:
                raise ValueError(f"bad cpulist range {part!r}")
            ids.update(range(start, end + 1))
        else:
            ids.add(int(part))
    return sorted(ids)


def format(ids: Iterable[int]) -> str:  # noqa: A001 - mirrors parse()
    """Format ids as a compact cpulist: ``[0, 1, 2, 3, 8]`` becomes ``"0-3,8"``."""
    out: list[str] = []
    run_start = prev = None
    for i in sorted(set(ids)):
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if run_start is not None:
            out.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
        run_start = prev = i
    if run_start is not None:
        out.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
    return ",".join(out)


def parse_mask(text: str) -> list[int]:
    """Parse a kernel cpumask such as ``"00000000,0000000f"`` (32-bit words, high first)."""
    words = text.strip().replace(",", "")
    if not words:
        return []
    value = int(words, 16)
    return [i for i in range(value.bit_length()) if value >> i & 1]
