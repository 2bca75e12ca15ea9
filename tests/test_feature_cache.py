"""Tests of the feature cache and of encode_catalog's cache hits, misses and recovery."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from _shapes_catalog import ShapesCatalog

from fiq_env import encoder as encoder_module
from fiq_env import feature_cache
from fiq_env.encoder import EncoderConfig, ImageEncoder, build_catalog_features, encode_catalog, load_encoder
from fiq_env.errors import DataError
from fiq_env.feature_cache import COMPLETE_MARKER, FeatureCache


def tiny_config(**overrides: object) -> EncoderConfig:
    values = {"model_name": "test_resnet", "image_size": 32, "epochs": 1, "batch_size": 16, "lr": 1e-2}
    return EncoderConfig(**{**values, **overrides})


def entries(cache_dir: Path) -> list[Path]:
    """Every folder in the cache, finished entries and leftovers alike."""
    return sorted(path for path in cache_dir.iterdir()) if cache_dir.exists() else []


def forbid_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to build, train or run the encoder fail the test."""

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder ran although the cache should have answered")

    monkeypatch.setattr(encoder_module, "train_encoder", fail)
    monkeypatch.setattr(ImageEncoder, "__init__", fail)
    monkeypatch.setattr(ImageEncoder, "forward", fail)


@pytest.fixture(autouse=True)
def _single_thread():
    """Run these small models on one thread: on a busy 2-core machine, extra threads mostly wait on each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def shapes() -> ShapesCatalog:
    return ShapesCatalog(num_items=48, seed=0)


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# -- FeatureCache on its own ---------------------------------------------------------------------


def test_cache_round_trip(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    features = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    scores = np.zeros((5, 0), dtype=np.float32)
    cache.save("entry", features, scores, {"catalog_fingerprint": "f", "encoder_key": "k"})
    entry = cache.load("entry", "f", "k", num_items=5)
    assert np.array_equal(entry.features, features)
    assert entry.attribute_scores.shape == (5, 0)


@pytest.mark.parametrize(
    ("fingerprint", "key", "num_items"), [("other", "k", 5), ("f", "other", 5), ("f", "k", 6)], ids=["fingerprint", "key", "items"]
)
def test_cache_rejects_mismatch(tmp_path: Path, fingerprint: str, key: str, num_items: int) -> None:
    cache = FeatureCache(tmp_path)
    cache.save("entry", np.ones((5, 2)), np.ones((5, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    assert cache.load("entry", fingerprint, key, num_items) is None


def test_cache_missing_entry_is_none(tmp_path: Path) -> None:
    assert FeatureCache(tmp_path).load("absent", "f", "k", 1) is None


def test_cache_save_leaves_no_staging(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    assert [path.name for path in entries(tmp_path)] == ["entry"]


@pytest.fixture
def group_readable_umask():
    """Set the umask to 022 for one test, as on most shared machines, and restore it."""
    import os

    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_cache_entry_follows_umask(tmp_path: Path, group_readable_umask) -> None:
    # tempfile makes 0700 folders and 0600 files, but a shared cache needs the umask's modes.
    cache = FeatureCache(tmp_path)
    path = cache.save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    assert path.stat().st_mode & 0o777 == 0o755
    for file_path in path.iterdir():
        assert file_path.stat().st_mode & 0o777 == 0o644, file_path.name


def test_cache_entry_keeps_setgid(tmp_path: Path, group_readable_umask) -> None:
    # A group-shared cache folder is setgid, so entries and their files take its group.
    import stat

    tmp_path.chmod(0o2775)
    path = FeatureCache(tmp_path).save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    assert path.stat().st_mode & stat.S_ISGID
    assert path.stat().st_mode & 0o777 == 0o755


def test_cache_unreadable_entry_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An entry this user may not read belongs to someone else, so it must not be deleted.
    cache = FeatureCache(tmp_path)
    path = cache.save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})

    def denied(file_path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(file_path))

    monkeypatch.setattr(feature_cache, "file_sha256", denied)
    with pytest.raises(DataError, match="FIQ_CACHE_DIR"):
        cache.load("entry", "f", "k", num_items=2)
    assert path.is_dir()


def test_cache_unreadable_entry_folder_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder this user may not enter makes Path.is_file raise PermissionError itself.
    cache = FeatureCache(tmp_path)
    path = cache.save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    real_is_file = Path.is_file

    def denied(self: Path) -> bool:
        if self.parent == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.raises(DataError, match="cannot read the feature cache entry"):
        cache.load("entry", "f", "k", num_items=2)
    monkeypatch.undo()
    assert path.is_dir()


def test_unwritable_cache_fails_before_training(shapes: ShapesCatalog, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    forbid_model(monkeypatch)
    with pytest.raises(DataError, match="FIQ_CACHE_DIR"):
        encode_catalog(shapes, tiny_config(), cache_dir=blocker / "encoders", progress=False)


def test_cache_save_removes_stale_staging(tmp_path: Path) -> None:
    import os
    import time

    stale = tmp_path / ".entry.killed.tmp"
    half_deleted = tmp_path / ".entry.123.deleting"
    fresh = tmp_path / ".other.running.tmp"
    for folder in (stale, half_deleted, fresh):
        folder.mkdir()
        (folder / "arrays.safetensors").write_bytes(b"partial")
    old = time.time() - feature_cache.STALE_STAGING_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(half_deleted, (old, old))

    FeatureCache(tmp_path).save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    assert not stale.exists()
    assert not half_deleted.exists()
    assert fresh.exists()
    assert (tmp_path / "entry").is_dir()


def test_load_rechecks_entry_replaced_mid_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A reader that meets an entry another process is replacing must not delete the new copy.
    cache = FeatureCache(tmp_path)
    cache.save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    real_check = FeatureCache._load_checked
    calls = []

    def replaced_once(self, *args):
        calls.append(args)
        if len(calls) == 1:
            raise feature_cache.CorruptEntryError("arrays.safetensors is missing")
        return real_check(self, *args)

    monkeypatch.setattr(FeatureCache, "_load_checked", replaced_once)
    assert cache.load("entry", "f", "k", num_items=2) is not None
    assert len(calls) == 2
    assert (tmp_path / "entry").is_dir()


def test_publish_retries_after_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first rename fails as if another process had put a half-deleted entry in the way.
    import os

    real_replace = os.replace
    failures = []

    def racing_replace(source, destination) -> None:
        if Path(destination).name == "entry" and str(source).endswith(".tmp") and not failures:
            failures.append(source)
            raise OSError(39, "Directory not empty")
        real_replace(source, destination)

    monkeypatch.setattr(feature_cache.os, "replace", racing_replace)
    cache = FeatureCache(tmp_path)
    cache.save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    assert len(failures) == 1
    assert cache.load("entry", "f", "k", num_items=2) is not None
    assert [path.name for path in entries(tmp_path)] == ["entry"]


def test_cache_save_replaces_stray_file(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    (tmp_path / "entry").write_text("left by another tool")
    cache.save("entry", np.ones((2, 2)), np.ones((2, 1)), {"catalog_fingerprint": "f", "encoder_key": "k"})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["entry"]
    assert cache.load("entry", "f", "k", num_items=2) is not None


def test_cache_default_root_uses_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIQ_CACHE_DIR", str(tmp_path))
    assert FeatureCache().root == tmp_path / "encoders"


# -- encode_catalog through the cache ------------------------------------------------------------


def test_encode_features_normalized(shapes: ShapesCatalog, cache_dir: Path) -> None:
    features = encode_catalog(shapes, tiny_config(), cache_dir, progress=False)
    assert features.features.shape == (len(shapes), features.dim)
    assert np.isfinite(features.features).all()
    assert np.allclose(np.linalg.norm(features.features, axis=1), 1.0, atol=1e-5)


def test_encode_top_attributes_ordered(shapes: ShapesCatalog, cache_dir: Path) -> None:
    features = encode_catalog(shapes, tiny_config(top_n=3), cache_dir, progress=False)
    assert features.top_attributes.shape == (len(shapes), 3)
    ranked = np.take_along_axis(features.attribute_scores, features.top_attributes, axis=1)
    assert (np.diff(ranked, axis=1) <= 0).all()
    third_best = np.sort(features.attribute_scores, axis=1)[:, -3]
    assert np.array_equal(ranked[:, 2], third_best)


def test_encode_records_metadata(shapes: ShapesCatalog, cache_dir: Path) -> None:
    result = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    assert result.metadata["catalog_fingerprint"] == shapes.fingerprint()
    assert 0.0 <= result.metadata["val_mean_auc"] <= 1.0
    assert result.metadata["versions"]["torch"] == torch.__version__


def test_cache_hit_skips_model(shapes: ShapesCatalog, cache_dir: Path, monkeypatch, caplog) -> None:
    first = encode_catalog(shapes, tiny_config(), cache_dir, progress=False)
    forbid_model(monkeypatch)
    with caplog.at_level(logging.INFO, logger="fiq_env.encoder"):
        second = encode_catalog(shapes, tiny_config(), cache_dir, progress=False)
    assert np.array_equal(first.features, second.features)
    assert np.array_equal(first.attribute_scores, second.attribute_scores)
    assert "loaded features from cache" in caplog.text


def test_cache_hit_honours_top_n(shapes: ShapesCatalog, cache_dir: Path) -> None:
    encode_catalog(shapes, tiny_config(top_n=2), cache_dir, progress=False)
    result = build_catalog_features(shapes, tiny_config(top_n=4), cache_dir, progress=False)
    assert result.from_cache
    assert result.features.top_n == 4


def test_changed_config_recomputes(shapes: ShapesCatalog, cache_dir: Path) -> None:
    encode_catalog(shapes, tiny_config(), cache_dir, progress=False)
    result = build_catalog_features(shapes, tiny_config(seed=1), cache_dir, progress=False)
    assert not result.from_cache
    assert len(entries(cache_dir)) == 2


def test_changed_catalog_recomputes(shapes: ShapesCatalog, cache_dir: Path) -> None:
    encode_catalog(shapes, tiny_config(), cache_dir, progress=False)
    other = ShapesCatalog(num_items=48, seed=1)
    result = build_catalog_features(other, tiny_config(), cache_dir, progress=False)
    assert not result.from_cache
    assert result.features.catalog_fingerprint == other.fingerprint()


def test_miss_without_training_raises(shapes: ShapesCatalog, cache_dir: Path) -> None:
    with pytest.raises(DataError, match="fiq-train-encoder"):
        encode_catalog(shapes, tiny_config(), cache_dir, progress=False, train_if_missing=False)


def test_interrupted_write_leaves_nothing(shapes: ShapesCatalog, cache_dir: Path, monkeypatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("simulated interruption while writing metadata")

    with monkeypatch.context() as patch:
        patch.setattr(feature_cache, "write_json", crash)
        with pytest.raises(KeyboardInterrupt):
            encode_catalog(shapes, tiny_config(), cache_dir, progress=False)
    assert entries(cache_dir) == []

    result = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    assert not result.from_cache


def test_unfinished_entry_recomputed(shapes: ShapesCatalog, cache_dir: Path, caplog) -> None:
    first = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    (first.cache_path / COMPLETE_MARKER).unlink()
    with caplog.at_level(logging.WARNING, logger="fiq_env.feature_cache"):
        second = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    assert not second.from_cache
    assert "marker is missing" in caplog.text


@pytest.mark.parametrize("file_name", ["arrays.safetensors", "metadata.json", "encoder.safetensors"])
def test_corrupt_file_recomputed(shapes: ShapesCatalog, cache_dir: Path, caplog, file_name: str) -> None:
    first = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    damaged = first.cache_path / file_name
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="fiq_env.feature_cache"):
        second = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    assert not second.from_cache
    assert "discarding invalid feature cache entry" in caplog.text


def test_truncated_arrays_recomputed(shapes: ShapesCatalog, cache_dir: Path) -> None:
    first = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    arrays = first.cache_path / "arrays.safetensors"
    arrays.write_bytes(arrays.read_bytes()[:100])
    second = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    assert not second.from_cache
    assert np.array_equal(first.features.features, second.features.features)


def test_cached_weights_reproduce_features(shapes: ShapesCatalog, cache_dir: Path) -> None:
    result = build_catalog_features(shapes, tiny_config(), cache_dir, progress=False)
    model = load_encoder(result.cache_path)
    images = encoder_module.ImageSource(shapes, 32, preload_max_mb=64, progress=False)
    raw, _ = encoder_module.predict(model, images, np.arange(4))
    normalized = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.allclose(normalized, result.features.features[:4], atol=1e-5)


def test_unlabelled_catalog_gets_features(cache_dir: Path) -> None:
    catalog = ShapesCatalog(num_items=20, labelled=False)
    with pytest.warns(UserWarning, match="random weights"):
        features = encode_catalog(catalog, tiny_config(), cache_dir, progress=False)
    assert features.features.shape[0] == 20
    assert features.attribute_scores.shape == (20, 0)
    assert features.top_attributes.shape == (20, 0)


def test_unlabelled_catalog_cache_hit(cache_dir: Path, monkeypatch) -> None:
    catalog = ShapesCatalog(num_items=20, labelled=False)
    with pytest.warns(UserWarning):
        encode_catalog(catalog, tiny_config(), cache_dir, progress=False)
    forbid_model(monkeypatch)
    result = build_catalog_features(catalog, tiny_config(), cache_dir, progress=False)
    assert result.from_cache
    assert result.features.attribute_names == ()


# -- fiq-train-encoder ---------------------------------------------------------------------------


def test_cli_second_run_uses_cache(tmp_path: Path, capsys) -> None:
    from fiq_env.encoder_cli import main

    argv = [
        "--catalog", "synthetic", "--category", "dress", "--num-items", "100",
        "--model", "test_resnet", "--image-size", "32", "--epochs", "1",
        "--cache-dir", str(tmp_path), "--no-progress", "--log-level", "WARNING",
    ]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "trained the encoder" in first
    assert "val mean ROC-AUC" in first
    assert "loaded features from cache" in second
    assert len(entries(tmp_path / "encoders")) == 1


def test_cli_bad_preset_exits(capsys) -> None:
    from fiq_env.encoder_cli import main

    with pytest.raises(SystemExit):
        main(["--preset", "gpu"])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_missing_weights_reports_error(tmp_path: Path, capsys) -> None:
    from fiq_env.encoder_cli import main

    code = main(["--num-items", "100", "--model", "test_resnet", "--weights", str(tmp_path / "none.pth")])
    assert code == 1
    assert "none.pth" in capsys.readouterr().err


def test_cli_interrupt_exits_cleanly(tmp_path: Path, monkeypatch, capsys) -> None:
    from fiq_env import encoder_cli

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(encoder_cli, "build_catalog_features", interrupt)
    argv = ["--num-items", "100", "--cache-dir", str(tmp_path), "--no-progress", "--log-level", "WARNING"]
    assert encoder_cli.main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    assert entries(tmp_path / "encoders") == []
