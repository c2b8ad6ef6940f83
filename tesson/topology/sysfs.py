"""Files under the root of the machine being read (``/``, or a dump's folder: hwloc's HWLOC_FSROOT).

Every read answers None for a file that is missing or unreadable: the Linux backend treats that as
"the kernel does not say". A list or mask file that is there but malformed is refused with a
UsageError naming it (see tesson.cpulist for why tesson does not guess as hwloc does).
"""

from __future__ import annotations

import os

from tesson import cpulist
from tesson.errors import UsageError


class FS:
    """Reads files under the root (``p`` is an absolute path on the machine being read).

    Every access goes through :meth:`path` (root + p): a subclass may map paths elsewhere and
    note what is read (tesson.probe_collect does both, to ship exactly the files the reader needs).
    """

    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def path(self, p: str) -> str:
        """Where ``p`` of the machine being read is on this one."""
        return self.root + p

    def where(self, p: str) -> str:
        """The path of ``p`` on this machine, for messages."""
        return self.path(p)

    def read(self, p: str) -> bytes | None:
        try:
            fd = os.open(self.path(p), os.O_RDONLY)
        except OSError:
            return None
        try:
            data = os.read(fd, 65536)
            if len(data) == 65536:  # big procfs files only; sysfs ones fit in one read
                chunks = [data]
                while True:
                    b = os.read(fd, 65536)
                    if not b:
                        break
                    chunks.append(b)
                data = b"".join(chunks)
            return data
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_head(self, p: str, size: int = 8192) -> bytes | None:
        try:
            fd = os.open(self.path(p), os.O_RDONLY)
        except OSError:
            return None
        try:
            return os.read(fd, size)
        except OSError:
            return None
        finally:
            os.close(fd)

    def _text(self, p: str) -> str | None:
        """The file's text up to a NUL (some dumps and kernels end sysfs files with one)."""
        data = self.read(p)
        if data is None:
            return None
        return data.split(b"\0", 1)[0].decode("ascii", "replace")

    def read_mask(self, p: str) -> int | None:
        """A kernel cpumask file ("00000000,0000000f") as an int, or None."""
        text = self._text(p)
        if text is None:
            return None
        try:
            return cpulist.hex_to_mask(text)
        except ValueError as e:
            raise UsageError(f"malformed cpumask in {self.where(p)}: {e}") from None

    def read_list(self, p: str) -> int | None:
        """A kernel cpulist file ("0-3,8") as a mask, or None."""
        text = self._text(p)
        if text is None:
            return None
        try:
            return cpulist.list_to_mask(text)
        except ValueError as e:
            raise UsageError(f"malformed cpulist in {self.where(p)}: {e}") from None

    def read_int(self, p: str) -> int | None:
        data = self.read(p)
        if data is None:
            return None
        try:
            return int(data.strip().split()[0].rstrip(b"K"))
        except (ValueError, IndexError):
            return None

    def exists(self, p: str) -> bool:
        return os.path.exists(self.path(p))

    def listdir(self, p: str) -> list[str]:
        try:
            return os.listdir(self.path(p))
        except OSError:
            return []

    def readlink(self, p: str) -> str | None:
        """A symlink's target as the kernel wrote it, or None."""
        try:
            return os.readlink(self.path(p))
        except OSError:
            return None

    def at(self, p: str) -> FS:
        """A reader relative to the folder ``p`` (see :class:`At`), closed with ``close()``."""
        return At(self, p)

    def close(self) -> None:
        """Release what :meth:`at` holds (nothing, for a plain reader)."""


class At(FS):
    """Reads relative to an open directory (shorter path walks for the many per-CPU files)."""

    def __init__(self, fs: FS, path: str):
        super().__init__(fs.path(path))
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        os.close(self.fd)

    def where(self, p: str) -> str:
        return self.root + "/" + p

    def read(self, p: str) -> bytes | None:
        try:
            fd = os.open(p, os.O_RDONLY, dir_fd=self.fd)
        except OSError:
            return None
        try:
            return os.read(fd, 65536)
        except OSError:
            return None
        finally:
            os.close(fd)

    def exists(self, p: str) -> bool:
        return os.path.exists(self.root + "/" + p)

    def listdir(self, p: str) -> list[str]:
        try:
            return os.listdir(self.root + "/" + p)
        except OSError:
            return []
