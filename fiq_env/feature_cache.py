"""The on-disk cache of encoder outputs, one entry per (catalog, encoder configuration).

An entry is a folder named after the catalog's fingerprint and the encoder's
cache key. It contains:

- ``arrays.safetensors``: ``features`` ``(num_items, dim)`` and
  ``attribute_scores`` ``(num_items, num_attributes)``, both float32, as the
  encoder produced them (features not yet L2-normalized);
- ``encoder.safetensors``: the trained encoder's weights, where a model was built;
- ``metadata.json``: configuration, catalog fingerprint, validation metrics,
  timings, library versions and the SHA-256 of every other file;
- ``COMPLETE``: a marker written last.

Writers fill a temporary folder beside the entry and rename it into place, so
a reader sees either no entry or a whole one. Readers still check the marker
and the checksums, because a folder copied or synced by other tools carries
no such guarantee. An entry that fails a check is logged, removed and
reported as a miss, so the caller recomputes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy_file
from safetensors.numpy import save_file as save_numpy_file

from fiq_env.errors import DataError
from fiq_env.io import cache_root, file_sha256, read_json, umask_mode, write_json

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
"""Bumped whenever the entry layout changes; entries of another version are recomputed."""

ARRAYS_FILE = "arrays.safetensors"
WEIGHTS_FILE = "encoder.safetensors"
METADATA_FILE = "metadata.json"
COMPLETE_MARKER = "COMPLETE"

PUBLISH_ATTEMPTS = 3
"""Tries to move a finished entry into place while other processes replace or delete the same entry."""

STALE_STAGING_SECONDS = 3600
"""Age after which a leftover staging folder counts as abandoned, because a live write needs seconds."""

_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]+")


class CorruptEntryError(Exception):
    """An entry failed a check while loading; raised and caught inside this module only."""


@dataclass
class CacheEntry:
    """One loaded cache entry.

    Attributes:
        path: the entry folder.
        features: ``(num_items, dim)`` float32 raw (not normalized) image features.
        attribute_scores: ``(num_items, num_attributes)`` float32 attribute logits.
        metadata: the contents of ``metadata.json``.
    """

    path: Path
    features: np.ndarray
    attribute_scores: np.ndarray
    metadata: dict[str, Any]

    @property
    def weights_path(self) -> Path | None:
        """The trained encoder's weights file, or None when the entry has none."""
        path = self.path / WEIGHTS_FILE
        return path if path.is_file() else None


def entry_name(source: str, category: str, catalog_fingerprint: str, encoder_key: str) -> str:
    """Return the folder name of an entry: readable prefix, then the two hashes that identify it."""
    name = f"{source}-{category}-{catalog_fingerprint}-{encoder_key}"
    return _UNSAFE_NAME_CHARACTERS.sub("_", name)


class FeatureCache:
    """A folder of cache entries (by default ``<cache root>/encoders``).

    Args:
        root: where the entries live; None uses ``encoders/`` under
            :func:`fiq_env.io.cache_root` (``$FIQ_CACHE_DIR`` when set).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else cache_root() / "encoders"

    def check_writable(self) -> None:
        """Raise :class:`DataError` unless entries can be written, before minutes of training are spent."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(
                f"cannot create the feature cache folder {self.root}: {error}; choose a writable cache folder (FIQ_CACHE_DIR or --cache-dir)"
            ) from error
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise DataError(
                f"the feature cache folder {self.root} is not writable; choose a writable cache folder (FIQ_CACHE_DIR or --cache-dir)"
            )

    def entry_path(self, name: str) -> Path:
        """Return the folder an entry called ``name`` occupies (whether or not it exists)."""
        return self.root / name

    def load(self, name: str, catalog_fingerprint: str, encoder_key: str, num_items: int) -> CacheEntry | None:
        """Load entry ``name``, or return None when it is absent or fails a check.

        A present entry that fails a check (no completion marker, another
        format version, another catalog or encoder, a checksum or shape
        mismatch, unreadable files) is logged as a warning and removed.
        """
        path = self.entry_path(name)
        if not path.is_dir():
            logger.debug("no cache entry at %s", path)
            return None

        for attempt in range(2):
            try:
                return self._load_checked(path, catalog_fingerprint, encoder_key, num_items)
            except (CorruptEntryError, PermissionError) as error:
                denied = error if isinstance(error, PermissionError) else error.__cause__
                if isinstance(denied, PermissionError):
                    # Another user's valid entry: deleting it would only make both users recompute.
                    raise DataError(
                        f"cannot read the feature cache entry {path}: {denied}; give this user read access "
                        f"to {self.root} or use a cache folder of your own (FIQ_CACHE_DIR or --cache-dir)"
                    ) from error
                if attempt == 0:
                    # Another process may have replaced the entry while it was read, so check the new one.
                    logger.debug("cache entry %s failed a check (%s); checking it once more", path, error)
                    continue
                logger.warning("discarding invalid feature cache entry %s: %s; it will be recomputed", path, error)
                remove_entry(path)
        return None

    def save(
        self,
        name: str,
        features: np.ndarray,
        attribute_scores: np.ndarray,
        metadata: Mapping[str, Any],
        weights: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write an entry atomically and return its folder.

        Args:
            name: entry folder name, from :func:`entry_name`.
            features: ``(num_items, dim)`` raw image features.
            attribute_scores: ``(num_items, num_attributes)`` attribute logits;
                ``num_attributes`` may be 0.
            metadata: JSON-serializable facts about the run; this method adds
                the format version, the shapes and the file checksums.
            weights: a torch ``state_dict`` of the encoder, or None.

        An existing entry of the same name is replaced. If another process
        finished the same entry first, its copy is kept and ours discarded.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging()
        final_path = self.entry_path(name)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=self.root))
        try:
            # Keep the setgid bit a group-shared cache folder passes on, so the files get its group.
            os.chmod(staging, umask_mode(0o777) | (staging.stat().st_mode & stat.S_ISGID))
            self._write_files(staging, features, attribute_scores, metadata, weights)
            for file_path in staging.iterdir():  # safetensors writes its files 0600
                os.chmod(file_path, umask_mode(0o666))
            self._publish(staging, final_path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final_path

    def _remove_stale_staging(self) -> None:
        """Delete staging and half-deleted folders of killed processes (older than ``STALE_STAGING_SECONDS``).

        A write fills its staging folder within seconds of creating it, so an
        old one belongs to a process that died before publishing.
        """
        cutoff = time.time() - STALE_STAGING_SECONDS
        for path in [*self.root.glob(".*.tmp"), *self.root.glob(".*.deleting")]:
            try:
                if path.is_dir() and path.stat().st_mtime < cutoff:
                    shutil.rmtree(path)
                    logger.info("removed the staging folder %s of an interrupted cache write", path)
            except OSError as error:  # another process removed or published it in the meantime
                logger.debug("could not remove staging folder %s: %s", path, error)

    # -- loading -------------------------------------------------------------------------------

    def _load_checked(self, path: Path, catalog_fingerprint: str, encoder_key: str, num_items: int) -> CacheEntry:
        marker_path = path / COMPLETE_MARKER
        if not marker_path.is_file():
            raise CorruptEntryError(f"the {COMPLETE_MARKER} marker is missing (an interrupted write)")
        try:
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
            metadata_digest = file_sha256(path / METADATA_FILE)
        except (OSError, ValueError) as error:
            raise CorruptEntryError(f"cannot check {COMPLETE_MARKER} against {METADATA_FILE}: {error}") from error
        if not isinstance(marker, dict) or marker.get("metadata_sha256") != metadata_digest:
            raise CorruptEntryError(f"{METADATA_FILE} does not match the SHA-256 recorded in {COMPLETE_MARKER}")

        try:
            metadata = read_json(path / METADATA_FILE)
        except (OSError, ValueError) as error:
            raise CorruptEntryError(f"cannot read {METADATA_FILE}: {error}") from error
        if not isinstance(metadata, dict):
            raise CorruptEntryError(f"{METADATA_FILE} is not a JSON object")

        expected = {
            "format_version": CACHE_FORMAT_VERSION,
            "catalog_fingerprint": catalog_fingerprint,
            "encoder_key": encoder_key,
            "num_items": num_items,
        }
        for key, value in expected.items():
            if metadata.get(key) != value:
                raise CorruptEntryError(f"{key} is {metadata.get(key)!r} in {METADATA_FILE}, expected {value!r}")

        checksums = metadata.get("sha256")
        if not isinstance(checksums, dict) or ARRAYS_FILE not in checksums:
            raise CorruptEntryError(f"{METADATA_FILE} lists no checksum for {ARRAYS_FILE}")
        for file_name, expected_digest in checksums.items():
            file_path = path / file_name
            if not file_path.is_file():
                raise CorruptEntryError(f"{file_name} is missing")
            try:
                digest = file_sha256(file_path)
            except OSError as error:
                raise CorruptEntryError(f"cannot read {file_name}: {error}") from error
            if digest != expected_digest:
                raise CorruptEntryError(f"{file_name} does not match its recorded SHA-256")

        try:
            arrays = load_numpy_file(str(path / ARRAYS_FILE))
        except (OSError, SafetensorError) as error:
            raise CorruptEntryError(f"cannot read {ARRAYS_FILE}: {error}") from error
        features = arrays.get("features")
        scores = arrays.get("attribute_scores")
        if features is None or scores is None:
            raise CorruptEntryError(f"{ARRAYS_FILE} lacks the features or attribute_scores array")
        if features.ndim != 2 or features.shape[0] != num_items:
            raise CorruptEntryError(f"features have shape {features.shape}, expected ({num_items}, dim)")
        if scores.ndim != 2 or scores.shape[0] != num_items:
            raise CorruptEntryError(f"attribute_scores have shape {scores.shape}, expected ({num_items}, attributes)")
        if not np.isfinite(features).all():
            raise CorruptEntryError("features contain NaN or inf")

        logger.debug("cache entry %s passed its checks", path)
        return CacheEntry(path, features, scores, metadata)

    # -- writing -------------------------------------------------------------------------------

    def _write_files(
        self,
        staging: Path,
        features: np.ndarray,
        attribute_scores: np.ndarray,
        metadata: Mapping[str, Any],
        weights: Mapping[str, Any] | None,
    ) -> None:
        features = np.ascontiguousarray(features, dtype=np.float32)
        attribute_scores = np.ascontiguousarray(attribute_scores, dtype=np.float32)
        save_numpy_file({"features": features, "attribute_scores": attribute_scores}, str(staging / ARRAYS_FILE))
        written = [ARRAYS_FILE]

        if weights is not None:
            # Imported here so that reading the cache does not need torch.
            from safetensors.torch import save_file as save_torch_file

            tensors = {key: value.detach().cpu().contiguous() for key, value in weights.items()}
            save_torch_file(tensors, str(staging / WEIGHTS_FILE))
            written.append(WEIGHTS_FILE)

        full_metadata = {
            **metadata,
            "format_version": CACHE_FORMAT_VERSION,
            "num_items": int(features.shape[0]),
            "feature_dim": int(features.shape[1]),
            "num_attributes": int(attribute_scores.shape[1]),
            "sha256": {file_name: file_sha256(staging / file_name) for file_name in written},
        }
        write_json(staging / METADATA_FILE, full_metadata)

        # The marker goes last: a folder without it was never finished.
        marker_text = json.dumps({"metadata_sha256": file_sha256(staging / METADATA_FILE)})
        with open(staging / COMPLETE_MARKER, "w", encoding="utf-8") as handle:
            handle.write(marker_text + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _publish(self, staging: Path, final_path: Path) -> None:
        for attempt in range(PUBLISH_ATTEMPTS):
            if final_path.exists():
                remove_entry(final_path)
            try:
                os.replace(staging, final_path)
                logger.debug("published cache entry %s", final_path)
                return
            except OSError:
                # Another process published the same entry between our removal and our
                # rename. Both were computed from the same inputs, so keep a complete copy.
                if (final_path / COMPLETE_MARKER).is_file():
                    logger.info("another process wrote %s first; keeping its copy", final_path)
                    shutil.rmtree(staging, ignore_errors=True)
                    return
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise


def remove_entry(path: Path) -> None:
    """Delete an entry folder: rename it aside first, so no reader sees it half-deleted."""
    trash = path.with_name(f".{path.name}.{os.getpid()}.deleting")
    with contextlib.suppress(OSError):
        os.replace(path, trash)
        path = trash
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        # A plain file or link where an entry folder belongs (for example left by another tool).
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
