"""Tests of the pixel color namer: Lab conversion, garment mask, color name, lightness and pattern."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fiq_env.catalog import make_catalog
from fiq_env.catalog.color import (
    LIGHTNESS_LEVELS,
    ColorNamerConfig,
    describe_pixels,
    garment_mask,
    name_color,
    srgb_to_lab,
)
from fiq_env.catalog.colors import COLOR_NAMES, COLOR_RGB
from fiq_env.errors import ConfigError

GARMENT_POLYGON = [(40, 20), (80, 20), (100, 150), (20, 150)]


def draw_garment(color: tuple[int, int, int], background: tuple[int, int, int] = (225, 228, 222)) -> Image.Image:
    """Draw a dress-like trapezoid of one color on a plain background."""
    image = Image.new("RGB", (120, 160), background)
    ImageDraw.Draw(image).polygon(GARMENT_POLYGON, fill=color)
    return image


def drawn_mask() -> np.ndarray:
    canvas = Image.new("L", (120, 160), 0)
    ImageDraw.Draw(canvas).polygon(GARMENT_POLYGON, fill=255)
    return np.asarray(canvas) > 0


def test_lab_white_point():
    lab = srgb_to_lab(np.array([255, 255, 255]))
    assert np.allclose(lab, [100.0, 0.0, 0.0], atol=1e-3)


def test_lab_keeps_shape():
    assert srgb_to_lab(np.zeros((4, 5, 3), dtype=np.uint8)).shape == (4, 5, 3)


@pytest.mark.parametrize("name", COLOR_NAMES)
def test_name_color_reference(name):
    pixels = np.tile(np.array(COLOR_RGB[name], dtype=np.uint8), (10, 1))
    assert name_color(pixels) == name


def test_name_color_empty_raises():
    with pytest.raises(ConfigError, match="at least one pixel"):
        name_color(np.zeros((0, 3), dtype=np.uint8))


@pytest.mark.parametrize("background", [(225, 228, 222), (60, 60, 70)])
def test_mask_matches_drawn_garment(background):
    mask = garment_mask(draw_garment(COLOR_RGB["red"], background))
    truth = drawn_mask()
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9


def test_mask_uniform_image_falls_back_to_ellipse():
    mask = garment_mask(Image.new("RGB", (100, 100), (128, 128, 128)))
    assert 0.3 < mask.mean() < 0.6


def test_mask_rejects_grayscale_array():
    with pytest.raises(ConfigError, match="height, width, 3"):
        garment_mask(np.zeros((10, 10), dtype=np.uint8))


@pytest.mark.parametrize("name", ["black", "red", "navy", "teal", "beige", "yellow", "purple"])
def test_describe_solid_color(name):
    background = (60, 60, 70) if name in ("beige", "yellow") else (225, 228, 222)
    attributes = describe_pixels(draw_garment(COLOR_RGB[name], background))
    assert attributes.color == name


def test_describe_solid_not_patterned():
    assert not describe_pixels(draw_garment(COLOR_RGB["green"])).patterned


def test_describe_stripes_patterned():
    image = draw_garment(COLOR_RGB["blue"])
    pixels = np.asarray(image).copy()
    stripes = drawn_mask() & ((np.arange(160) // 6) % 2 == 0)[:, None]
    pixels[stripes] = (245, 245, 240)
    assert describe_pixels(pixels).patterned


def test_describe_stripes_keep_base_color():
    image = draw_garment(COLOR_RGB["red"])
    pixels = np.asarray(image).copy()
    stripes = drawn_mask() & ((np.arange(160) // 8) % 3 == 0)[:, None]
    pixels[stripes] = (20, 20, 25)
    assert describe_pixels(pixels).color == "red"


@pytest.mark.parametrize(("name", "level"), [("black", "dark"), ("gray", "medium"), ("white", "light")])
def test_describe_lightness(name, level):
    background = (60, 60, 70) if name == "white" else (225, 228, 222)
    assert describe_pixels(draw_garment(COLOR_RGB[name], background)).lightness == level


def test_describe_given_mask():
    image = draw_garment(COLOR_RGB["orange"])
    assert describe_pixels(image, mask=drawn_mask()).color == "orange"


def test_describe_mask_shape_mismatch():
    with pytest.raises(ConfigError, match="does not match"):
        describe_pixels(draw_garment(COLOR_RGB["red"]), mask=np.ones((5, 5), dtype=bool))


def test_lightness_levels_ordered():
    assert LIGHTNESS_LEVELS == ("dark", "medium", "light")


def test_config_rejects_inverted_thresholds():
    with pytest.raises(ConfigError, match="dark_below"):
        ColorNamerConfig(dark_below=70.0, light_above=30.0)


def test_synthetic_color_accuracy():
    """The namer recovers the rendered color name on at least 90% of synthetic garments."""
    correct = 0
    total = 0
    for category in ("dress", "shirt", "toptee"):
        catalog = make_catalog("synthetic", category=category, num_items=100, seed=7)
        images = catalog.render_batch(np.arange(len(catalog)))
        for index in range(len(catalog)):
            correct += describe_pixels(images[index]).color == catalog.group_value("color", index)
            total += 1
    assert correct / total >= 0.9
