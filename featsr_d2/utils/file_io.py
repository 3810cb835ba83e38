"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

The temporary file lies beside the target as ``.featsr_d2-tmp.<name>.<host>-<pid>.<random>.tmp``
(the fixed prefix :data:`TEMP_PREFIX` marks it as featsr_d2's own). A process killed mid-write
leaves it behind (a full-size checkpoint, for a killed save); :func:`remove_stale_temporaries`
removes those whose writer is gone: written on this host by a process that no longer runs, or
older than ``STALE_AFTER_S`` whatever wrote them (another host's), and logs each removal. A file
without the prefix is never removed, however it is named: it may be a user's.

:func:`file_sha256` is the digest the converted-weights cache and the shipped weights are checked
with.
"""

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = [
    "STALE_AFTER_S",
    "TEMP_PREFIX",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "file_sha256",
    "remove_stale_temporaries",
]

logger = logging.getLogger(__name__)

# A temporary file older than this (seconds) is stale whoever wrote it: no write takes a day.
STALE_AFTER_S = 24 * 3600
# The start of every temporary file's name: a name no user would pick.
TEMP_PREFIX = ".featsr_d2-tmp."
# mkstemp's random part is 8 characters of [a-z0-9_].
_TEMP_NAME = re.compile(
    re.escape(TEMP_PREFIX) + r".+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp$"
)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:24] or "host"


def atomic_write(path: str, write: Callable[[IO], Any], *, binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Short enough for any file-name limit (255 bytes) whatever the target's name.
    prefix = f"{TEMP_PREFIX}{os.path.basename(path)[:120]}.{_host()}-{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: str, obj: Any, *, indent: int | None = None) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=indent))


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_temporaries(directory: str) -> list[str]:
    """Remove the temporary files of :func:`atomic_write` in ``directory`` (not its sub-folders)
    whose writer was killed (see the module docstring), logging each; returns their paths. Files
    of live writers, and every file without :data:`TEMP_PREFIX`, are left alone."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    host, now = _host(), time.time()
    removed = []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            continue  # renamed by its writer meanwhile
        mine = match["host"] == host
        if old or (mine and _process_gone(int(match["pid"]))):
            try:
                size = entry.stat(follow_symlinks=False).st_size
                os.remove(entry.path)
            except FileNotFoundError:
                continue
            removed.append(entry.path)
            logger.info(
                "Removed %s (%.1f MB): featsr_d2's temporary file of a write that did not finish "
                "(its process %s on %s %s)",
                entry.path,
                size / 2**20,
                match["pid"],
                match["host"],
                "is gone" if mine and not old else "started more than a day ago",
            )
    return removed


def file_sha256(path: str) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
