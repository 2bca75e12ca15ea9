"""Integrity checks for a catalog's image files, with a cache keyed by file path, size and mtime.

Every image is decoded in full when a catalog is indexed, so that a broken
file is reported by id at indexing time instead of failing (or showing a
black image) in the middle of a training run. The problems found are:

- ``missing``: no file for the item;
- ``empty``: a zero-byte file;
- ``corrupt``: a file that PIL cannot identify or fully decode (truncated
  JPEG or PNG, a non-image file with an image suffix, a decompression bomb);
- ``placeholder``: a file whose bytes are identical to those of at least
  ``placeholder_min_copies - 1`` other items. Dead product links return one
  placeholder picture for every item, so a large group of byte-identical
  files is a placeholder. The default threshold is 3 copies: two identical
  files may be one product listed under two ids, three or more rarely are.

Check results (and any per-image analysis, see ``analyze``) are cached in one
JSON file per image folder under :func:`fiq_env.io.cache_root`, so
re-indexing a large folder decodes only new or changed files.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageFile
from tqdm.auto import tqdm

from fiq_env.io import cache_root, read_json, write_json
from fiq_env.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

PROBLEMS = ("missing", "empty", "corrupt", "placeholder")
"""Problem names, as used in :attr:`CatalogReport.excluded`."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_CACHE_FORMAT = 1

# Errors PIL raises for unreadable images: UnidentifiedImageError and
# "image file is truncated" are OSErrors; some decoders raise the others.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError)


@dataclass(frozen=True)
class ImageCheck:
    """Outcome of checking one image file.

    Attributes:
        status: ``"ok"``, ``"missing"``, ``"empty"`` or ``"corrupt"``
            (placeholders are found across files, see :class:`ImageCheckResult`).
        digest: SHA-256 of the file's bytes, or None when there is no content.
        detail: the decoder's error message for corrupt files, else empty.
        analysis: whatever ``analyze`` returned for the decoded image.
    """

    status: str
    digest: str | None = None
    detail: str = ""
    analysis: dict = field(default_factory=dict)


@dataclass
class ImageCheckResult:
    """Checks of every item's image, with the problems grouped by name.

    Attributes:
        checks: item id to its check.
        excluded: problem name (see :data:`PROBLEMS`) to the item ids that
            have it, in input order; empty problems are left out.
    """

    checks: dict[str, ImageCheck]
    excluded: dict[str, list[str]]

    @property
    def excluded_ids(self) -> set[str]:
        return {item for ids in self.excluded.values() for item in ids}

    def fingerprint_payload(self) -> dict[str, object]:
        """Return a hash of every (id, status, digest), for catalog fingerprints."""
        digest = hashlib.sha256()
        for item in sorted(self.checks):
            check = self.checks[item]
            digest.update(f"{item}\t{check.status}\t{check.digest}\n".encode())
        excluded_counts = {problem: len(ids) for problem, ids in sorted(self.excluded.items())}
        return {"checks": digest.hexdigest(), "excluded": excluded_counts}


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make PIL raise on truncated files even where another library allowed them globally."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def check_image_file(
    path: str | os.PathLike[str] | None,
    analyze: Callable[[Image.Image], dict] | None = None,
    draft_size: int | None = None,
) -> ImageCheck:
    """Decode one image file completely and classify it.

    Args:
        path: the file, or None when the item has no file.
        analyze: optional function run on the decoded RGB image; its result
            is stored in :attr:`ImageCheck.analysis`.
        draft_size: if given, JPEGs are decoded at a reduced scale whose
            short side is at least this many pixels (faster; the whole
            compressed stream is still read, so truncation is still found).

    Returns:
        The check. Decoding errors become ``"corrupt"``; this function raises
        only for errors of ``analyze`` itself.
    """
    if path is None or not os.path.isfile(path):
        return ImageCheck("missing")
    with open(path, "rb") as handle:
        content = handle.read()
    if not content:
        return ImageCheck("empty")
    digest = hashlib.sha256(content).hexdigest()

    try:
        with _strict_decoding(), Image.open(path) as image:
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            rgb = image.convert("RGB")
    except _DECODE_ERRORS as error:
        return ImageCheck("corrupt", digest, detail=f"{type(error).__name__}: {error}")

    analysis = analyze(rgb) if analyze is not None else {}
    return ImageCheck("ok", digest, analysis=analysis)


class _CheckCache:
    """One JSON file of checks keyed by absolute path; an entry is valid while (size, mtime) match."""

    def __init__(self, name: str, analysis_key: str) -> None:
        self.path = cache_root() / "image_checks" / f"{name}.json"
        self.analysis_key = analysis_key
        self.entries: dict[str, dict] = {}
        self.changed = False
        if self.path.is_file():
            try:
                stored = read_json(self.path)
            except DataError as error:
                logger.warning("ignoring unreadable image check cache %s: %s", self.path, error)
                return
            if stored.get("format") == _CACHE_FORMAT:
                self.entries = stored.get("entries", {})

    def get(self, path: str, stat: os.stat_result) -> ImageCheck | None:
        entry = self.entries.get(path)
        if entry is None or entry["size"] != stat.st_size or entry["mtime_ns"] != stat.st_mtime_ns:
            return None
        if entry["status"] == "ok" and entry.get("analysis_key") != self.analysis_key:
            return None
        return ImageCheck(entry["status"], entry["digest"], entry["detail"], entry.get("analysis", {}))

    def put(self, path: str, stat: os.stat_result, check: ImageCheck) -> None:
        self.entries[path] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "status": check.status,
            "digest": check.digest,
            "detail": check.detail,
            "analysis_key": self.analysis_key,
            "analysis": check.analysis,
        }
        self.changed = True

    def save(self) -> None:
        if self.changed:
            write_json(self.path, {"format": _CACHE_FORMAT, "entries": self.entries})
            self.changed = False


def cache_name_for(folder: str | os.PathLike[str]) -> str:
    """Return a cache file name for an image folder: its name plus a hash of its absolute path."""
    resolved = str(Path(folder).resolve())
    return f"{Path(resolved).name or 'root'}-{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"


def check_images(
    files: Mapping[str, str | os.PathLike[str] | None],
    cache_name: str,
    *,
    analyze: Callable[[Image.Image], dict] | None = None,
    analysis_key: str = "",
    draft_size: int | None = None,
    placeholder_min_copies: int = 3,
    description: str = "checking images",
) -> ImageCheckResult:
    """Check every item's image file, using and updating the on-disk cache.

    Args:
        files: item id to its image path, or None for an item without a file.
        cache_name: cache file name, usually :func:`cache_name_for` of the folder.
        analyze: optional per-image analysis run on each decoded good image
            (the pixel attributes of an image-folder catalog, for example).
        analysis_key: identifies ``analyze`` and its settings; cached
            analyses made under another key are recomputed.
        draft_size: see :func:`check_image_file`.
        placeholder_min_copies: number of items sharing identical bytes from
            which they all count as placeholders; 0 turns the test off.
        description: label of the progress bar.

    Returns:
        The checks and the excluded ids grouped by problem. Missing files are
        not cached (there is nothing to key them by).
    """
    if placeholder_min_copies == 1 or placeholder_min_copies < 0:
        raise ConfigError(
            f"placeholder_min_copies must be 0 (off) or at least 2, got {placeholder_min_copies}"
        )
    cache = _CheckCache(cache_name, analysis_key)
    checks: dict[str, ImageCheck] = {}
    decoded = 0

    for item, path in tqdm(files.items(), desc=description, unit="image", leave=False, disable=len(files) < 500):
        if path is None:
            checks[item] = ImageCheck("missing")
            continue
        key = str(Path(path).resolve())
        try:
            stat = os.stat(key)
        except FileNotFoundError:
            checks[item] = ImageCheck("missing")
            continue

        cached = cache.get(key, stat)
        if cached is None:
            cached = check_image_file(key, analyze=analyze, draft_size=draft_size)
            decoded += 1
            cache.put(key, stat, cached)
            # Save now and then so an interrupted first pass over a big folder keeps its progress.
            if decoded % 5000 == 0:
                cache.save()
        checks[item] = cached

    cache.save()
    logger.info("checked %d image(s): %d decoded, %d from the cache", len(files), decoded, len(files) - decoded)

    excluded: dict[str, list[str]] = defaultdict(list)
    for item, check in checks.items():
        if check.status != "ok":
            excluded[check.status].append(item)

    if placeholder_min_copies:
        by_digest: dict[str, list[str]] = defaultdict(list)
        for item, check in checks.items():
            if check.status == "ok":
                by_digest[check.digest].append(item)
        for digest, items in by_digest.items():
            if len(items) >= placeholder_min_copies:
                logger.warning("%d items share one image file (sha256 %s...): treated as placeholders", len(items), digest[:12])
                excluded["placeholder"].extend(items)

    return ImageCheckResult(checks=checks, excluded={p: excluded[p] for p in PROBLEMS if excluded.get(p)})


def warn_about_exclusions(excluded: Mapping[str, list[str]], where: str) -> None:
    """Log one warning per problem with its count and the first ids."""
    for problem, ids in excluded.items():
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        logger.warning("%s: excluded %d item(s) with %s images: %s", where, len(ids), problem, shown)


__all__ = [
    "IMAGE_SUFFIXES",
    "PROBLEMS",
    "ImageCheck",
    "ImageCheckResult",
    "cache_name_for",
    "check_image_file",
    "check_images",
    "warn_about_exclusions",
]
