"""Tests of the image encoder: configuration, weights loading, training and evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from _shapes_catalog import ShapesCatalog
from safetensors.torch import save_file

from fiq_env.encoder import (
    EncoderConfig,
    ImageEncoder,
    attribute_auc,
    evaluate_attributes,
    labelled_indices,
    image_to_tensor,
    train_encoder,
)
from fiq_env.errors import CheckpointError, ConfigError, DataError, UnknownNameError


def tiny_config(**overrides: object) -> EncoderConfig:
    """A config that trains in well under a second on the shapes catalog."""
    values = {"model_name": "test_resnet", "image_size": 32, "epochs": 4, "batch_size": 16, "lr": 1e-2}
    return EncoderConfig(**{**values, **overrides})


@pytest.fixture(autouse=True)
def _single_thread():
    """Run these small models on one thread: on a busy 2-core machine, extra threads mostly wait on each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def shapes() -> ShapesCatalog:
    return ShapesCatalog(num_items=80, seed=0)


@pytest.fixture(scope="module")
def trained(shapes: ShapesCatalog) -> tuple[ImageEncoder, object]:
    return train_encoder(shapes, tiny_config(), progress=False)


# -- configuration -----------------------------------------------------------------------------


def test_preset_cpu_builds() -> None:
    config = EncoderConfig.preset("cpu")
    model = ImageEncoder(config, num_attributes=5)
    assert model.feature_dim == model.backbone.num_features


def test_preset_paper_constructs() -> None:
    config = EncoderConfig.preset("paper", pretrained=False)
    assert config.model_name == "efficientnet_b7"
    model = ImageEncoder(config, num_attributes=3)
    assert model.feature_dim == 2560


def test_preset_override_applies() -> None:
    config = EncoderConfig.preset("cpu", epochs=2)
    assert config.epochs == 2


def test_preset_unknown_lists_presets() -> None:
    with pytest.raises(ConfigError, match="cpu, paper"):
        EncoderConfig.preset("gpu")


def test_unknown_model_suggests_names() -> None:
    with pytest.raises(UnknownNameError, match="resnet10t"):
        ImageEncoder(EncoderConfig(model_name="resnet10"), num_attributes=1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("image_size", 0), ("batch_size", 0), ("lr", 0.0), ("epochs", -1), ("top_n", -1), ("weight_decay", -0.1)],
)
def test_config_rejects_bad_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        tiny_config(**{field: value})


def test_config_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ConfigError, match="colour"):
        EncoderConfig.from_dict({**tiny_config().to_dict(), "colour": "red"})


def test_config_round_trips_dict() -> None:
    config = tiny_config(seed=3)
    assert EncoderConfig.from_dict(config.to_dict()) == config


def test_cache_key_ignores_runtime_fields() -> None:
    assert tiny_config().cache_key() == tiny_config(num_workers=2, top_n=3, device="cpu").cache_key()


@pytest.mark.parametrize(("field", "value"), [("seed", 1), ("epochs", 5), ("image_size", 48), ("augmentation", False)])
def test_cache_key_tracks_result_fields(field: str, value: object) -> None:
    assert tiny_config().cache_key() != tiny_config(**{field: value}).cache_key()


# -- model and weights ---------------------------------------------------------------------------


def test_forward_shapes() -> None:
    model = ImageEncoder(tiny_config(), num_attributes=6).eval()
    features, logits = model(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, model.feature_dim)
    assert logits.shape == (2, 6)


def test_forward_without_head_gives_empty_logits() -> None:
    model = ImageEncoder(tiny_config(), num_attributes=0).eval()
    _, logits = model(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 0)


def test_preprocess_uses_timm_normalization() -> None:
    model = ImageEncoder(tiny_config(), num_attributes=1)
    mean = timm.data.resolve_data_config(model=model.backbone)["mean"]
    white = model.preprocess(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8))
    expected = (1.0 - mean[0]) / model.std[0, 0, 0, 0].item()
    assert white[0, 0, 0, 0].item() == pytest.approx(expected)


def test_image_to_tensor_center_crops() -> None:
    from PIL import Image

    image = Image.new("RGB", (60, 30), (10, 20, 30))
    tensor = image_to_tensor(image, 16)
    assert tensor.shape == (3, 16, 16)
    assert tensor.dtype == torch.uint8


def test_pretrained_passes_to_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    real_create = timm.create_model

    def recording_create(name: str, **kwargs: object) -> torch.nn.Module:
        calls.append(kwargs)
        return real_create(name, **{**kwargs, "pretrained": False})

    monkeypatch.setattr(timm, "create_model", recording_create)
    ImageEncoder(tiny_config(pretrained=True), num_attributes=2)
    assert calls[0]["pretrained"] is True
    assert calls[0]["num_classes"] == 0


def test_weights_path_missing_raises(tmp_path) -> None:
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(CheckpointError, match="nowhere.safetensors"):
        ImageEncoder(tiny_config(weights_path=str(missing)), num_attributes=2)


def test_weights_path_missing_raises_in_cache_key(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        tiny_config(weights_path=str(tmp_path / "absent.pth")).cache_key()


def test_weights_other_architecture_raises(tmp_path) -> None:
    other = timm.create_model("test_efficientnet", num_classes=0)
    path = tmp_path / "efficientnet.safetensors"
    save_file(other.state_dict(), str(path))
    with pytest.raises(CheckpointError, match="efficientnet.safetensors") as raised:
        ImageEncoder(tiny_config(weights_path=str(path)), num_attributes=2)
    assert "missing" in str(raised.value)


def test_weights_wrong_shape_names_key(tmp_path) -> None:
    state = timm.create_model("test_resnet", num_classes=0).state_dict()
    first_key = next(iter(state))
    state[first_key] = torch.zeros(1)
    path = tmp_path / "bad_shape.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=first_key.replace(".", r"\.")):
        ImageEncoder(tiny_config(weights_path=str(path)), num_attributes=2)


def test_weights_garbage_file_raises(tmp_path) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        ImageEncoder(tiny_config(weights_path=str(path)), num_attributes=2)


def test_weights_timm_checkpoint_loads(tmp_path) -> None:
    # A timm classification checkpoint: classifier keys included, nested under "state_dict".
    source = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path / "timm_checkpoint.pth"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)
    model = ImageEncoder(tiny_config(weights_path=str(path)), num_attributes=2)
    loaded = model.backbone.state_dict()
    expected = source.state_dict()
    assert all(torch.equal(loaded[key], expected[key]) for key in loaded)


def test_weights_encoder_file_loads(tmp_path) -> None:
    torch.manual_seed(5)
    source = ImageEncoder(tiny_config(), num_attributes=4)
    path = tmp_path / "encoder.safetensors"
    save_file(source.state_dict(), str(path))
    model = ImageEncoder(tiny_config(weights_path=str(path)), num_attributes=2)
    first_key = next(iter(model.backbone.state_dict()))
    assert torch.equal(model.backbone.state_dict()[first_key], source.backbone.state_dict()[first_key])


# -- training and evaluation ---------------------------------------------------------------------


def test_training_loss_drops(trained) -> None:
    _, result = trained
    assert result.epoch_losses[-1] < result.epoch_losses[0]


def test_training_beats_chance_on_color(trained, shapes: ShapesCatalog) -> None:
    model, _ = trained
    report = evaluate_attributes(model, shapes, "val")
    assert report["per_attribute"]["blue"] > 0.8


def test_evaluation_reports_per_type(trained, shapes: ShapesCatalog) -> None:
    model, _ = trained
    report = evaluate_attributes(model, shapes, "val")
    assert set(report["per_type"]) == {"color", "shape", "texture"}
    assert report["num_items"] == len(shapes.indices("val"))


def test_evaluation_unknown_split_raises(trained, shapes: ShapesCatalog) -> None:
    model, _ = trained
    with pytest.raises(ConfigError, match="validation"):
        evaluate_attributes(model, shapes, "validation")


def test_training_is_seeded(shapes: ShapesCatalog) -> None:
    config = tiny_config(epochs=1)
    _, first = train_encoder(shapes, config, progress=False)
    _, second = train_encoder(shapes, config, progress=False)
    assert first.epoch_losses == second.epoch_losses


def test_training_skips_single_image_batch(shapes: ShapesCatalog) -> None:
    train_size = len(labelled_indices(shapes, "train"))
    config = tiny_config(epochs=1, batch_size=train_size - 1)
    _, result = train_encoder(shapes, config, progress=False)
    assert np.isfinite(result.epoch_losses[0])


def test_training_without_labels_raises() -> None:
    with pytest.raises(DataError, match="no labelled items"):
        train_encoder(ShapesCatalog(num_items=20, labelled=False), tiny_config(), progress=False)


def test_streaming_matches_preloaded(shapes: ShapesCatalog) -> None:
    # preload_max_mb=0 decodes every batch from the catalog instead of keeping images in memory.
    _, preloaded = train_encoder(shapes, tiny_config(epochs=1), progress=False)
    _, streamed = train_encoder(shapes, tiny_config(epochs=1, preload_max_mb=0), progress=False)
    assert streamed.epoch_losses == pytest.approx(preloaded.epoch_losses)


def test_attribute_auc_skips_single_class() -> None:
    labels = np.array([[True, True], [False, True], [True, True]])
    logits = np.array([[2.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    report = attribute_auc(logits, labels, ("a", "b"), ("color", "shape"))
    assert report["per_attribute"] == {"a": 1.0}
    assert report["per_type"] == {"color": 1.0}


def test_attribute_auc_empty_is_none() -> None:
    report = attribute_auc(np.zeros((0, 0)), np.zeros((0, 0), dtype=bool), (), ())
    assert report["mean_auc"] is None
    assert report["num_attributes_scored"] == 0
