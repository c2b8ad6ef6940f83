"""Sets of CPU (or NUMA node) ids: the kernel's two ways of writing them, and int bitmasks.

The one parser of the project for both kernel formats:

- the *list* ("0-3,8,10-11"): sysfs ``online``/``isolated`` files, cpuset cgroups, ``/proc/self/status``,
  Docker's ``--cpuset-cpus``, tesson's labels and options;
- the *mask* ("00000000,0000000f": 32-bit hex words, highest first): sysfs ``*_cpus``, ``cpumap``,
  ``shared_cpu_map``.

Inside tesson a set is a Python int used as a bitmask (bit i = id i): fast to intersect and count.

Malformed text raises ValueError naming the bad part: a range that goes backwards ("5-3"), a part
that is not a number, a negative id. The kernel never writes such text, so the sysfs reader refuses a
file holding it (one line naming the file) rather than guess. hwloc does guess: its list reader fills
the set and clears the gaps between segments, which assumes ascending segments, so it drops a
backwards range and silently loses CPUs on an out-of-order list; a pinning tool should not build
shards on that.
"""

from __future__ import annotations

from collections.abc import Iterable


def _id(text: str, part: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"bad cpulist part {part!r}: {text!r} is not a CPU number")
    return int(text)


def list_to_mask(text: str) -> int:
    """A cpulist such as ``"0-3,8"`` as a bitmask; ``""`` (or only whitespace) is 0."""
    m = 0
    for part in text.strip().split(","):
        lo, sep, hi = part.partition("-")
        if lo.isdigit() and lo.isascii() and (not sep or hi.isdigit() and hi.isascii()):  # the usual "3" or "0-3"
            start = int(lo)
            end = int(hi) if sep else start
            if end >= start:
                m |= ((1 << (end - start + 1)) - 1) << start
                continue
        if not part.strip():
            continue
        if sep:
            start, end = _id(lo, part), _id(hi, part)
            if end < start:
                raise ValueError(f"bad cpulist range {part.strip()!r}: it goes backwards")
            m |= ((1 << (end - start + 1)) - 1) << start
        else:
            m |= 1 << _id(lo, part)
    return m


def parse(text: str) -> list[int]:
    """Parse a cpulist such as ``"0-3,8"`` into a sorted list of ints; ``""`` is the empty list."""
    return bits(list_to_mask(text))


def hex_to_mask(text: str) -> int:
    """A kernel cpumask such as ``"00000000,0000000f"`` as a bitmask; ``""`` is 0."""
    words = text.strip().replace(",", "")
    if not words:
        return 0
    try:
        value = int(words, 16)
    except ValueError:
        value = -1
    if value < 0 or "_" in words or "x" in words or "X" in words:  # int() would take "0x1f", "1_f"
        raise ValueError(f"bad cpumask {text.strip()!r}: not 32-bit hex words")
    return value


def parse_mask(text: str) -> list[int]:
    """Parse a kernel cpumask such as ``"00000000,0000000f"`` (32-bit words, high first)."""
    return bits(hex_to_mask(text))


def format(ids: Iterable[int]) -> str:  # shadows the builtin: mirrors parse()
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


def bits(mask: int) -> list[int]:
    """The set bits of ``mask``, ascending."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def mask_of(ids: Iterable[int]) -> int:
    """The bitmask of these ids."""
    m = 0
    for i in ids:
        m |= 1 << i
    return m


def first(mask: int) -> int:
    """The lowest set bit of ``mask`` (-1 for 0)."""
    return (mask & -mask).bit_length() - 1


def weight(mask: int) -> int:
    """How many bits of ``mask`` are set."""
    return mask.bit_count()


if not hasattr(int, "bit_count"):  # Python 3.9

    def weight(mask: int) -> int:
        """How many bits of ``mask`` are set."""
        return bin(mask).count("1")
