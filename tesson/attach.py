"""Run a command in a running container through the Engine API, as ``docker exec`` does.

Three ways, by what was asked:
- neither ``-i`` nor ``-t``: the command's output is streamed back, stdout to stdout and stderr to
  stderr (the daemon multiplexes them; docker-py's ``demux`` takes them apart);
- ``-i``: stdin is copied to the command by a thread while the output is read (and the write half
  of the connection is shut when stdin ends, so the command sees end of file);
- ``-t``: the daemon gives the command a terminal, output comes back as one raw stream, the local
  terminal is put in raw mode for the session (and restored whatever happens) and the remote one is
  sized like it, again whenever the window changes (SIGWINCH).

The exit status is the command's own (``exec_inspect``), as ``docker exec`` returns it.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Callable


def _raw_socket(sock):
    return getattr(sock, "_sock", sock)


def _write(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _copy_stdin(sock) -> None:
    raw = _raw_socket(sock)
    try:
        while True:
            data = os.read(sys.stdin.fileno(), 65536)
            if not data:
                break
            raw.sendall(data)
        import socket

        raw.shutdown(socket.SHUT_WR)
    except OSError:  # the command ended first, or the connection went away
        pass


def _resize(client, exec_id: str) -> None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        client.exec_resize(exec_id, height=size.lines, width=size.columns)
    except Exception:  # not a terminal, or the command already ended
        pass


def run(client, container_id: str, command: list[str], *, interactive: bool, tty: bool,
        env: list[str] | None = None, user: str = "", workdir: str | None = None) -> int:
    """Run ``command`` in the container; returns its exit status."""
    from docker.utils.socket import frames_iter

    exec_id = client.exec_create(container_id, command, stdin=interactive, tty=tty, environment=env or None,
                                 user=user or "", workdir=workdir or None)["Id"]
    out, err = sys.stdout.fileno(), sys.stderr.fileno()
    sys.stdout.flush()
    if not interactive and not tty:
        for chunk_out, chunk_err in client.exec_start(exec_id, stream=True, demux=True):
            if chunk_out:
                _write(out, chunk_out)
            if chunk_err:
                _write(err, chunk_err)
    else:
        sock = client.exec_start(exec_id, tty=tty, socket=True)
        restore: Callable[[], None] | None = None
        if tty and sys.stdin.isatty():
            import signal
            import termios
            import tty as ttymod

            fd = sys.stdin.fileno()
            saved = termios.tcgetattr(fd)
            ttymod.setraw(fd)
            previous = signal.signal(signal.SIGWINCH, lambda *_: _resize(client, exec_id))

            def restore() -> None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
                signal.signal(signal.SIGWINCH, previous)

        try:
            if tty:
                _resize(client, exec_id)
            if interactive:
                threading.Thread(target=_copy_stdin, args=(sock,), daemon=True, name="exec-stdin").start()
            for stream, data in frames_iter(sock, tty):
                _write(err if stream == 2 else out, data)
        finally:
            if restore is not None:
                restore()
            try:
                sock.close()
            except OSError:
                pass
    code = client.exec_inspect(exec_id).get("ExitCode")
    return 0 if code is None else int(code)
