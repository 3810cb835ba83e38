"""One run per output folder: a run holds its folder, and a second run into it stops at once.

Two trainings into one ``OUTPUT_DIR`` would both run to the end, their checkpoints interleaved and
``last_checkpoint``, ``model_final.pth``, ``metrics.json`` and ``config.yaml`` from whichever wrote
last. :func:`hold_output_dir` prevents that: the holder keeps an exclusive ``flock`` on
``<folder>/.featsr_d2.lock``, which names it (host, process id, start time, command line). Another
process asking for the folder gets :class:`OutputFolderBusyError` naming the folder and the
holder's process id, before it writes anything.

The kernel releases a ``flock`` when its process ends, however it ends (a kill included), so a lock
is never stale: a later run takes the folder over and says whose lock it took (the file still
names the process that ended without releasing it). Holding is per process and re-entrant: the
tool's set-up and the trainer it builds hold the same folder once. The lock lives on the folder's
file system; on NFS, Linux implements ``flock`` with the server's byte-range locks; on a file
system without locks the run goes on, with a warning that a second run would not be stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["LOCK_NAME", "OutputFolderBusyError", "claim_output_dir", "hold_output_dir"]

logger = logging.getLogger(__name__)

# The lock file, inside the held folder.
LOCK_NAME = ".featsr_d2.lock"

# flock's errors on a file system without locks (some FUSE and network file systems).
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)

_lock = threading.Lock()
_held: dict[str, list] = {}  # real path -> [file descriptor, hold count, holding process id]


class OutputFolderBusyError(RuntimeError):
    """Another live process holds the output folder."""


def _owner_text(owner: dict) -> str:
    since = owner.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return (
        f"process {owner.get('pid', '?')} on host {owner.get('host', '?')} (since {when}: "
        f"{owner.get('command', '?')})"
    )


def _read_owner(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        owner = json.loads(data.decode("utf-8")) if data.strip() else None
    except (UnicodeDecodeError, ValueError):
        return {"pid": "?", "host": "?", "command": f"unreadable lock file ({len(data)} bytes)"}
    return owner if isinstance(owner, dict) else None


def _write_owner(fd: int, owner: dict | None) -> None:
    data = json.dumps(owner).encode("utf-8") if owner is not None else b""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)


def _acquire(path: str) -> int:
    os.makedirs(path, exist_ok=True)
    lock_file = os.path.join(path, LOCK_NAME)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in _NO_LOCKS:
                logger.warning(
                    "Cannot lock the output folder %s (its file system has no flock: %s): a "
                    "second run into it would not be stopped. Give each run its own folder.",
                    path,
                    e.strerror or e,
                )
                return fd
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            owner = _read_owner(fd)
            who = _owner_text(owner) if owner else "another process (starting right now)"
            raise OutputFolderBusyError(
                f"The output folder {path} is in use by {who}: two runs writing one folder "
                "would interleave their checkpoints, metrics and config. Wait for that run to "
                "end (or stop it), or give this run another output folder (OUTPUT_DIR, --out or "
                "--output)."
            ) from None
        previous = _read_owner(fd)
        if previous:
            logger.warning(
                "Took over the output folder %s: its lock still named %s, which is no longer "
                "running (killed, or ended without releasing it).",
                path,
                _owner_text(previous),
            )
        _write_owner(
            fd,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.time(),
                "command": " ".join(sys.argv) or sys.executable,
            },
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(path: str) -> None:
    entry = _held.get(path)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[path]
    fd = entry[0]
    try:
        _write_owner(fd, None)  # released: the next holder has nothing to take over
    except OSError:
        pass  # the folder may be gone; the lock goes with the descriptor anyway
    finally:
        os.close(fd)  # releases the flock


def claim_output_dir(path: str) -> None:
    """Hold ``path`` (created if needed) until this process exits (or a matching release of
    :func:`hold_output_dir`); see the module docstring.

    Raises:
        OutputFolderBusyError: another live process holds it.
    """
    if not path:
        return
    real = os.path.realpath(path)
    with _lock:
        if real in _held:
            _held[real][1] += 1
            return
        _held[real] = [_acquire(real), 1, os.getpid()]


@contextlib.contextmanager
def hold_output_dir(path: str) -> Iterator[None]:
    """Hold ``path`` for the ``with`` block (re-entrant within the process).

    Raises:
        OutputFolderBusyError: another live process holds it.
    """
    claim_output_dir(path)
    try:
        yield
    finally:
        if path:
            with _lock:
                _release(os.path.realpath(path))


@atexit.register
def _release_all() -> None:
    with _lock:
        for path, entry in list(_held.items()):
            if entry[2] == os.getpid():  # not in a forked child: the parent still holds it
                entry[1] = 1
                _release(path)
