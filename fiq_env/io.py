"""Atomic file writes and the on-disk cache location.

Every cache, checkpoint and result file goes through :func:`atomic_write`, so
an interrupted run leaves either the old file or the new one, never a
truncated file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CACHE_ENV_VAR = "FIQ_CACHE_DIR"


def cache_root() -> Path:
    """Return the cache folder: ``$FIQ_CACHE_DIR`` if set, else ``~/.cache/fiq_env``."""
    configured = os.environ.get(CACHE_ENV_VAR)
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "fiq_env"
    root.mkdir(parents=True, exist_ok=True)
    return root


def umask_mode(base: int) -> int:
    """Return ``base`` with the process umask applied, the mode that ``open`` or ``mkdir`` would give.

    ``tempfile`` creates files 0600 and folders 0700 whatever the umask, so
    files published from a temporary name would be unreadable to the group of
    a shared cache folder without this.
    """
    return base & ~_process_umask()


def _process_umask() -> int:
    # Linux reports the umask in /proc. Elsewhere it can only be read by setting it,
    # which briefly changes it for every thread of the process.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path`` and move it over ``path`` on success.

    The temporary file is flushed and fsynced before the rename; on an
    exception it is deleted and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp_name, umask_mode(0o666))
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a malformed file raises :class:`~fiq_env.errors.DataError` naming it."""
    from fiq_env.errors import DataError

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON ({error}); delete or regenerate the file") from error
