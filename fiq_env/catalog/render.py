"""Vectorized drawing of synthetic garments from their attribute values.

Every image is a function of ``(seed, item index, attribute values,
image_size)`` only: per-item randomness (pose, background, color jitter,
flower positions, noise) comes from a counter-based hash of the seed and the
item index, never from a shared generator. So an item looks the same in any
batch and in any access order.

Shapes are drawn in a garment frame ``(u, v)``: ``u`` runs across the garment
from its center line, ``v`` runs down from the shoulder line, and one unit is
about the height of a maxi dress. Fine textures (twill, ribs, lace mesh) are
drawn in units of 1/64 of the image height, so they look the same at every
image size.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fiq_env.catalog.colors import COLOR_NAMES, COLOR_RGB
from fiq_env.catalog.garments import (
    BUTTONS,
    COLLAR,
    DRESS_LENGTH,
    FABRIC,
    FIT,
    LIGHTNESS,
    NECKLINE,
    PATTERN,
    SLEEVE_LENGTH,
    STRAPS,
    TOP_LENGTH,
)
from fiq_env.catalog.schema import UNKNOWN

GENERATOR_VERSION = 1
"""Version of the drawing code. Bump it whenever a render or an attribute draw changes, so caches keyed by the catalog fingerprint are rebuilt."""

# Pixel budget of one internal chunk: 64 images of 64 px. Small chunks keep
# the float32 intermediates in the CPU cache and bound memory for big images.
_CHUNK_PIXELS = 1 << 18


@dataclass(frozen=True)
class _Geometry:
    """Garment frame constants of one category (frame units, see the module docstring)."""

    shoulder_half_width: float
    waist_v: float
    waist_half_width: tuple[float, ...]  # per fit value
    hem_v: tuple[float, ...]  # per length value
    flare: tuple[float, ...]  # hem half width growth per unit below the waist, per fit value
    scale_range: tuple[float, float]  # image heights per frame unit
    top_range: tuple[float, float]  # image y of the shoulder line
    graphic_v: float


_DRESS = _Geometry(
    shoulder_half_width=0.16,
    waist_v=0.3,
    waist_half_width=(0.105, 0.125, 0.15),
    hem_v=(0.5, 0.66, 0.81, 0.97),
    flare=(0.08, 0.22, 0.38),
    scale_range=(0.8, 0.88),
    top_range=(0.05, 0.09),
    graphic_v=0.19,
)
_TOP = _Geometry(
    shoulder_half_width=0.17,
    waist_v=0.25,
    waist_half_width=(0.13, 0.16, 0.2),
    hem_v=(0.36, 0.52, 0.66),
    flare=(0.04, 0.05, 0.08),
    scale_range=(0.95, 1.1),
    top_range=(0.1, 0.18),
    graphic_v=0.22,
)
_GEOMETRY = {"dress": _DRESS, "shirt": _TOP, "toptee": _TOP}
assert len(_DRESS.hem_v) == len(DRESS_LENGTH.values) and len(_TOP.hem_v) == len(TOP_LENGTH.values)
assert len(_DRESS.waist_half_width) == len(_DRESS.flare) == len(FIT.values)

_SLEEVE_REACH = (0.0, 0.11, 0.24, 0.42)  # per sleeve_length value, 0 for sleeveless
assert len(_SLEEVE_REACH) == len(SLEEVE_LENGTH.values)
_ARMHOLE_V = 0.11  # bottom of the armhole of sleeveless garments
_STRAP_CENTER = 0.09
_STRAP_WIDTH = {"spaghetti straps": 0.022, "wide straps": 0.065}

# Luminance-contrasting colors for pattern details: dark details on light
# garments, light details on dark ones.
_DARK_DETAILS = np.array([(20, 20, 25), (25, 35, 90), (110, 20, 40), (30, 90, 45)], dtype=np.float32)
_LIGHT_DETAILS = np.array([(245, 245, 240), (240, 215, 50), (215, 195, 160), (150, 190, 235)], dtype=np.float32)
_FLOWER_CENTER = np.array((250, 225, 90), dtype=np.float32)
_BUCKLE = np.array((205, 170, 60), dtype=np.float32)


# --- shades of the named colors -------------------------------------------------


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert ``(..., 3)`` sRGB values in 0-255 to CIE L*a*b* (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


COLOR_JITTER = 5
"""Maximum per-channel offset added to an item's shade, in 0-255 units."""

_SHADE_CHECK_MARGIN = 8  # the shade table is checked against jitter this large


def _nearest_names_agree(rgb: np.ndarray, name_index: int) -> bool:
    """Return whether ``rgb`` and its jittered corners are nearest to color ``name_index`` in RGB and Lab."""
    reference = np.array([COLOR_RGB[n] for n in COLOR_NAMES], dtype=np.float64)
    offsets = np.array(list(itertools.product((-_SHADE_CHECK_MARGIN, _SHADE_CHECK_MARGIN), repeat=3)))
    points = np.clip(np.vstack([rgb[None], rgb[None] + offsets]), 0, 255)
    nearest_rgb = np.argmin(((points[:, None] - reference[None]) ** 2).sum(-1), axis=1)
    nearest_lab = np.argmin(((_srgb_to_lab(points)[:, None] - _srgb_to_lab(reference)[None]) ** 2).sum(-1), axis=1)
    return bool((nearest_rgb == name_index).all() and (nearest_lab == name_index).all())


def _build_shade_table() -> np.ndarray:
    """Return ``(num_colors, 3 lightness levels, 3)`` shades that keep each color's nearest name.

    A dark shade mixes the reference color toward black and a light shade
    toward white, by the largest step (up to 40%) after which the shade, and
    the shade moved by up to 8 per channel, still lies nearest to its own
    reference color in both RGB and L*a*b* distance.
    """
    table = np.zeros((len(COLOR_NAMES), len(LIGHTNESS.values), 3), dtype=np.float32)
    for index, name in enumerate(COLOR_NAMES):
        base = np.array(COLOR_RGB[name], dtype=np.float64)
        table[index, LIGHTNESS.values.index("medium")] = base
        for level, target in (("dark", np.zeros(3)), ("light", np.full(3, 255.0))):
            shade = base
            for step in np.arange(0.05, 0.401, 0.05):
                candidate = base + (target - base) * step
                if not _nearest_names_agree(candidate, index):
                    break
                shade = candidate
            table[index, LIGHTNESS.values.index(level)] = shade
    return table


SHADES = _build_shade_table()
"""``SHADES[color, lightness]``: the sRGB shade (float32, 0-255) drawn for a color and lightness code."""


# --- counter-based randomness ---------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """Apply the splitmix64 finalizer elementwise (uint64 arithmetic wraps by design)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _MIX1
        x = x ^ (x >> np.uint64(27))
        x = x * _MIX2
        return x ^ (x >> np.uint64(31))


def _item_keys(seed: int, indices: np.ndarray) -> np.ndarray:
    """Return one 64-bit key per item from the catalog seed and the item index."""
    seed_key = _mix64(np.array([seed], dtype=np.uint64) + _GOLDEN)
    with np.errstate(over="ignore"):
        return _mix64(seed_key ^ (indices.astype(np.uint64) * _GOLDEN))


def _uniform(keys: np.ndarray, stream: int | np.ndarray) -> np.ndarray:
    """Return uniform floats in [0, 1) for each key and stream number (broadcast)."""
    with np.errstate(over="ignore"):
        mixed = _mix64(keys ^ _mix64(np.asarray(stream, dtype=np.uint64) + _GOLDEN))
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# Stream numbers of the per-item random parameters.
_S_SCALE, _S_TOP, _S_CENTER, _S_ANGLE, _S_BG_TINT, _S_BG_LEVEL, _S_GRADIENT = range(7)
_S_JITTER, _S_DETAIL, _S_PHASE, _S_PERIOD, _S_ORIENT, _S_GRAPHIC, _S_SHINE = range(7, 14)
_S_NOISE, _S_FLOWER = 100, 200


# --- drawing --------------------------------------------------------------------


def render_garments(
    category: str,
    values: Mapping[str, np.ndarray],
    indices: np.ndarray,
    seed: int,
    image_size: int,
) -> np.ndarray:
    """Draw one image per item.

    Args:
        category: "dress", "shirt" or "toptee".
        values: group name to ``(batch,)`` value codes of the items to draw.
        indices: ``(batch,)`` catalog indices of the items (they key the randomness).
        seed: catalog seed.
        image_size: side of the square images in pixels.

    Returns:
        ``(batch, image_size, image_size, 3)`` uint8 RGB images.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    out = np.empty((len(indices), image_size, image_size, 3), dtype=np.uint8)
    chunk = max(1, _CHUNK_PIXELS // (image_size * image_size))
    for start in range(0, len(indices), chunk):
        stop = min(start + chunk, len(indices))
        part = {name: np.asarray(codes)[start:stop] for name, codes in values.items()}
        out[start:stop] = _render_chunk(category, part, indices[start:stop], seed, image_size)
    return out


def _render_chunk(
    category: str, values: Mapping[str, np.ndarray], indices: np.ndarray, seed: int, size: int
) -> np.ndarray:
    geometry = _GEOMETRY[category]
    keys = _item_keys(seed, indices)
    frame = _garment_frame(geometry, keys, size)

    # Silhouette, then the colors painted inside it.
    body, hem_v, half_width = _body_mask(geometry, values, frame)
    garment = body | _sleeve_mask(values, frame, geometry)
    garment = _apply_neckline(values, frame, garment)
    base, detail = _garment_colors(values, keys)
    color = np.broadcast_to(base[:, None, None, :], frame.u.shape + (3,)).copy()
    _paint_pattern(values, keys, frame, geometry, color, detail)
    holes = _apply_fabric(values, keys, frame, color)

    # Side darkening gives the flat shape some volume.
    color *= (1.0 - 0.12 * np.clip(np.abs(frame.u) / 0.4, 0.0, 1.0) ** 2)[..., None]
    covered = _paint_parts(values, frame, geometry, color, garment, body, hem_v, half_width, base)
    garment = garment | covered
    holes &= garment & ~covered

    background = _background(keys, base, frame.y, size, garment)
    image = np.where(garment[..., None], color, background)
    image = np.where(holes[..., None], 0.25 * color + 0.75 * background, image)

    # Sensor noise: a window of the seed's noise tile at a per-item offset.
    tile = _noise_tile(seed, size)
    offset_x = (_uniform(keys, _S_NOISE) * size).astype(np.int64)
    offset_y = (_uniform(keys, _S_NOISE + 1) * size).astype(np.int64)
    for row, (ox, oy) in enumerate(zip(offset_x, offset_y)):
        image[row] += tile[oy : oy + size, ox : ox + size, None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _noise_tile(seed: int, size: int) -> np.ndarray:
    """Return a ``(2 * size, 2 * size)`` float32 tile of uniform noise in [-3, 3) for a seed."""
    pixel_ids = np.arange(4 * size * size, dtype=np.uint64).reshape(2 * size, 2 * size)
    key = _mix64(np.array([seed], dtype=np.uint64) + _MIX1)
    return (6.0 * (_uniform(key ^ pixel_ids, _S_NOISE) - 0.5)).astype(np.float32)


@dataclass
class _Frame:
    """Per-pixel garment coordinates of a chunk, each ``(batch, size, size)``."""

    u: np.ndarray  # across, signed
    v: np.ndarray  # down from the shoulder line
    y: np.ndarray  # image row in [0, 1), for background gradients
    texel: float  # fine-texture unit in image heights: 1/64, one pixel at 64 px
    scale: np.ndarray  # (batch, 1, 1) image heights per frame unit


def _garment_frame(geometry: _Geometry, keys: np.ndarray, size: int) -> _Frame:
    """Map image pixels to garment coordinates under a per-item scale, position and small rotation."""
    scale = _lerp(geometry.scale_range, _uniform(keys, _S_SCALE)).astype(np.float32)[:, None, None]
    top = _lerp(geometry.top_range, _uniform(keys, _S_TOP)).astype(np.float32)[:, None, None]
    center = _lerp((0.46, 0.54), _uniform(keys, _S_CENTER)).astype(np.float32)[:, None, None]
    angle = np.deg2rad(_lerp((-5.0, 5.0), _uniform(keys, _S_ANGLE))).astype(np.float32)[:, None, None]

    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(grid, grid, indexing="ij")
    pivot_v = np.float32(0.45)
    dx = x[None] - center
    dy = y[None] - (top + scale * pivot_v)
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / scale
    v = (-sin * dx + cos * dy) / scale + pivot_v
    return _Frame(
        u=u.astype(np.float32),
        v=v.astype(np.float32),
        y=np.broadcast_to(y[None], u.shape),
        texel=1.0 / 64.0,
        scale=scale.astype(np.float32),
    )


def _lerp(bounds: tuple[float, float], t: np.ndarray) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * t


def _body_mask(
    geometry: _Geometry, values: Mapping[str, np.ndarray], frame: _Frame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the torso-and-skirt mask, each item's hem ``v`` and the half width at every pixel."""
    fit = values["fit"].astype(np.int64)
    length = values["length"].astype(np.int64)
    hem_v = np.asarray(geometry.hem_v, dtype=np.float32)[length][:, None, None]
    waist_hw = np.asarray(geometry.waist_half_width, dtype=np.float32)[fit][:, None, None]
    flare = np.asarray(geometry.flare, dtype=np.float32)[fit][:, None, None]
    shoulder_hw = geometry.shoulder_half_width
    waist_v = geometry.waist_v

    # Piecewise linear outline: shoulder -> waist -> hem.
    v = frame.v
    upper = shoulder_hw + (waist_hw - shoulder_hw) * np.clip(v / waist_v, 0.0, 1.0)
    lower = waist_hw + flare * np.maximum(v - waist_v, 0.0)
    half_width = np.where(v <= waist_v, upper, lower)
    body = (v >= 0.0) & (v <= hem_v) & (np.abs(frame.u) <= half_width)

    # Sleeveless garments keep only straps (or tank shoulders) above the armhole.
    sleeveless = (values["sleeve_length"] == SLEEVE_LENGTH.values.index("sleeveless"))[:, None, None]
    above_armhole = v < _ARMHOLE_V
    keep_top = _strap_mask(values, frame)
    body &= ~(sleeveless & above_armhole & ~keep_top)
    return body, hem_v, half_width


def _strap_mask(values: Mapping[str, np.ndarray], frame: _Frame) -> np.ndarray:
    """Return where a sleeveless garment has fabric above the armhole (straps, tank shoulders)."""
    uu = np.abs(frame.u)
    if "straps" not in values:
        # Sleeveless shirts are tank tops with broad shoulders.
        return uu <= 0.125
    straps = values["straps"][:, None, None]
    keep = np.zeros(frame.u.shape, dtype=bool)
    for word, width in _STRAP_WIDTH.items():
        code = STRAPS.values.index(word)
        keep |= (straps == code) & (np.abs(uu - _STRAP_CENTER) <= width / 2)
    return keep


def _sleeve_mask(values: Mapping[str, np.ndarray], frame: _Frame, geometry: _Geometry) -> np.ndarray:
    """Return both sleeves as tapered bars hanging from the shoulders."""
    reach = np.asarray(_SLEEVE_REACH, dtype=np.float32)[values["sleeve_length"].astype(np.int64)][:, None, None]
    loose = (values["fit"] == FIT.values.index("loose"))[:, None, None]
    angle = np.deg2rad(np.where(loose, np.float32(31.0), np.float32(25.0)))
    width = np.where(loose, np.float32(0.062), np.float32(0.05))

    # Both sides at once: garments are symmetric about u = 0.
    du = np.abs(frame.u) - (geometry.shoulder_half_width - 0.012)
    dv = frame.v - 0.02
    along = du * np.sin(angle) + dv * np.cos(angle)
    across = du * np.cos(angle) - dv * np.sin(angle)
    half = width - 0.015 * np.clip(along / np.maximum(reach, 1e-3), 0.0, 1.0)
    return (reach > 0) & (along >= -0.02) & (along <= reach) & (np.abs(across) <= half)


def _apply_neckline(
    values: Mapping[str, np.ndarray], frame: _Frame, garment: np.ndarray
) -> np.ndarray:
    """Cut the neckline out of the garment, or add the band of a high neck."""
    neckline = values["neckline"][:, None, None]
    uu, v = np.abs(frame.u), frame.v
    sleeveless = (values["sleeve_length"] == SLEEVE_LENGTH.values.index("sleeveless"))[:, None, None]

    # A high neck is a band up the neck. On a sleeveless garment it runs down
    # to the bodice like a halter.
    high = neckline == NECKLINE.values.index("high neck")
    band_bottom = np.where(sleeveless, _ARMHOLE_V + 0.01, 0.01)
    band = high & (uu <= 0.05) & (v >= -0.045) & (v <= band_bottom)
    garment = garment | band

    crew = (neckline == NECKLINE.values.index("crew neck")) & ((uu / 0.065) ** 2 + (v / 0.06) ** 2 < 1.0)
    scoop = (neckline == NECKLINE.values.index("scoop neck")) & ((uu / 0.085) ** 2 + (v / 0.15) ** 2 < 1.0)
    vee = (neckline == NECKLINE.values.index("v-neck")) & (v < 0.21) & (uu < 0.08 * (1.0 - v / 0.21))
    return garment & ~(crew | scoop | vee)


def _garment_colors(values: Mapping[str, np.ndarray], keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each item's jittered base shade and its pattern detail color, both ``(batch, 3)``."""
    shade = SHADES[values["color"].astype(np.int64), values["lightness"].astype(np.int64)]
    jitter = np.stack([_uniform(keys, _S_JITTER * 10 + c) for c in range(3)], axis=1)
    base = shade + COLOR_JITTER * (2.0 * jitter - 1.0)

    # Details contrast in luminance with the garment.
    luminance = base @ np.array([0.299, 0.587, 0.114])
    pick = (_uniform(keys, _S_DETAIL) * len(_DARK_DETAILS)).astype(np.int64)
    detail = np.where((luminance > 120)[:, None], _DARK_DETAILS[pick], _LIGHT_DETAILS[pick])
    return base.astype(np.float32), detail.astype(np.float32)


def _paint_pattern(
    values: Mapping[str, np.ndarray],
    keys: np.ndarray,
    frame: _Frame,
    geometry: _Geometry,
    color: np.ndarray,
    detail: np.ndarray,
) -> None:
    """Blend each item's pattern into ``color`` (in place), in the detail color."""
    pattern = values["pattern"]
    for word in PATTERN.values[1:]:
        rows = np.flatnonzero(pattern == PATTERN.values.index(word))
        if rows.size == 0:
            continue
        u, v = frame.u[rows], frame.v[rows]
        sub_keys = keys[rows]
        if word == "striped":
            alpha = _stripes(sub_keys, u, v)
        elif word == "polka dot":
            alpha = _dots(sub_keys, u, v)
        elif word == "floral":
            alpha, centers = _flowers(sub_keys, u, v)
            color[rows] = color[rows] * (1 - centers[..., None]) + _FLOWER_CENTER * centers[..., None]
        elif word == "plaid":
            alpha = _plaid(sub_keys, u, v)
        else:
            alpha = _graphic(sub_keys, u, v - geometry.graphic_v)
        tint = detail[rows][:, None, None, :]
        color[rows] = color[rows] * (1 - alpha[..., None]) + tint * alpha[..., None]


def _stripes(keys: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    period = _lerp((0.07, 0.09), _uniform(keys, _S_PERIOD))[:, None, None]
    phase = _uniform(keys, _S_PHASE)[:, None, None]
    vertical = (_uniform(keys, _S_ORIENT) < 0.35)[:, None, None]
    position = np.where(vertical, u, v) / period + phase
    return ((position % 1.0) < 0.4).astype(np.float32)


def _dots(keys: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    cell = 0.09
    phase = _uniform(keys, _S_PHASE)[:, None, None]
    row = np.floor(v / cell + phase)
    across = (u / cell + 0.5 * (row % 2) + phase) % 1.0 - 0.5
    down = (v / cell + phase) % 1.0 - 0.5
    return (across**2 + down**2 < 0.3**2).astype(np.float32)


def _flowers(keys: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return petal and flower-center masks: one five-petal flower per cell, placed at random in it."""
    cell = 0.16
    col, row = np.floor(u / cell), np.floor(v / cell)
    cell_key = keys[:, None, None] ^ ((col + 1000.0) * 4096.0 + row + 1000.0).astype(np.uint64) * _MIX1
    cx = (col + 0.3 + 0.4 * _uniform(cell_key, _S_FLOWER)) * cell
    cy = (row + 0.3 + 0.4 * _uniform(cell_key, _S_FLOWER + 1)) * cell
    turn = 2 * np.pi * _uniform(cell_key, _S_FLOWER + 2)
    du, dv = u - cx, v - cy
    radius = np.sqrt(du**2 + dv**2)
    theta = np.arctan2(dv, du)
    petals = radius < 0.06 * (0.55 + 0.45 * np.cos(5 * theta + turn))
    centers = radius < 0.016
    return (petals & ~centers).astype(np.float32), centers.astype(np.float32)


def _plaid(keys: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    period = _lerp((0.12, 0.16), _uniform(keys, _S_PERIOD))[:, None, None]
    phase = _uniform(keys, _S_PHASE)[:, None, None]
    across = ((u / period + phase) % 1.0) < 0.32
    down = ((v / period + phase) % 1.0) < 0.32
    thin = (((u / period + phase + 0.6) % 1.0) < 0.07) | (((v / period + phase + 0.6) % 1.0) < 0.07)
    alpha = 0.45 * across + 0.45 * down + 0.6 * thin
    return np.clip(alpha, 0.0, 0.9).astype(np.float32)


def _graphic(keys: np.ndarray, du: np.ndarray, dv: np.ndarray) -> np.ndarray:
    """Return one chest print per item: a ring, a star, a diamond or lines of "text"."""
    kind = (_uniform(keys, _S_GRAPHIC) * 4).astype(np.int64)[:, None, None]
    radius = np.sqrt(du**2 + dv**2)
    theta = np.arctan2(dv, du)
    ring = (radius < 0.085) & (radius > 0.05)
    star = radius < 0.09 * (0.5 + 0.5 * np.cos(5 * theta - np.pi / 2) ** 2)
    diamond = np.abs(du) + np.abs(dv) < 0.085
    text = (np.abs(du) < 0.09) & (np.abs(dv) < 0.065) & (((dv + 0.065) / 0.045) % 1.0 < 0.55)
    shapes = np.where(kind == 0, ring, np.where(kind == 1, star, np.where(kind == 2, diamond, text)))
    return shapes.astype(np.float32)


def _apply_fabric(values: Mapping[str, np.ndarray], keys: np.ndarray, frame: _Frame, color: np.ndarray) -> np.ndarray:
    """Add each fabric's look to ``color`` in place and return the lace holes mask."""
    fabric = values["fabric"]
    holes = np.zeros(frame.u.shape, dtype=bool)
    for word in ("shiny", "denim", "knit", "lace"):
        rows = np.flatnonzero(fabric == FABRIC.values.index(word))
        if rows.size == 0:
            continue
        u, v = frame.u[rows], frame.v[rows]
        tx = u * (frame.scale[rows] / frame.texel)
        ty = v * (frame.scale[rows] / frame.texel)
        if word == "shiny":
            # Two soft diagonal highlights at a random offset.
            shine = (_uniform(keys[rows], _S_SHINE) * 0.2 - 0.1)[:, None, None].astype(np.float32)
            diagonal = u + 0.45 * v - shine
            highlight = np.exp(-(((diagonal - 0.05) / 0.035) ** 2)) + 0.6 * np.exp(-(((diagonal + 0.14) / 0.025) ** 2))
            strength = (0.6 * np.minimum(highlight, 1.0))[..., None]
            color[rows] += (255.0 - color[rows]) * strength
        elif word == "denim":
            # A diagonal twill of darker lines.
            twill = ((tx + ty) % 3.0) < 1.1
            color[rows] *= np.where(twill, np.float32(0.72), np.float32(1.0))[..., None]
        elif word == "knit":
            # Vertical ribs with faint stitch rows.
            ribs = 0.8 + 0.2 * np.abs(np.sin(np.pi * tx / 2.0)) * (0.9 + 0.1 * np.cos(np.pi * ty))
            color[rows] *= ribs[..., None]
        else:
            # Lace: a regular mesh of holes that lets the background through.
            holes[rows] = ((tx % 3.0) < 1.2) & ((ty % 3.0) < 1.2)
    return holes


def _paint_parts(
    values: Mapping[str, np.ndarray],
    frame: _Frame,
    geometry: _Geometry,
    color: np.ndarray,
    garment: np.ndarray,
    body: np.ndarray,
    hem_v: np.ndarray,
    half_width: np.ndarray,
    base: np.ndarray,
) -> np.ndarray:
    """Draw belts, collars and buttons over ``color`` in place and return the pixels they add outside the garment."""
    added = np.zeros(frame.u.shape, dtype=bool)
    luminance = base @ np.array([0.299, 0.587, 0.114], dtype=np.float32)

    if "belt" in values:
        rows = np.flatnonzero(values["belt"] == 1)
        _paint_belt(rows, frame, geometry, color, garment, half_width, luminance, added)
    if "collar" in values:
        rows = np.flatnonzero(values["collar"] == COLLAR.values.index("collar"))
        _paint_collar(rows, frame, color, garment, added)
    if "buttons" in values:
        rows = np.flatnonzero(values["buttons"] == BUTTONS.values.index("buttons"))
        _paint_buttons(rows, frame, color, body, hem_v, luminance)
    return added


def _paint_belt(
    rows: np.ndarray,
    frame: _Frame,
    geometry: _Geometry,
    color: np.ndarray,
    garment: np.ndarray,
    half_width: np.ndarray,
    luminance: np.ndarray,
    added: np.ndarray,
) -> None:
    """Draw a waist belt with a gold buckle: dark brown on light garments, tan on dark ones."""
    if rows.size == 0:
        return
    uu, v = np.abs(frame.u[rows]), frame.v[rows]
    near_waist = np.abs(v - geometry.waist_v)
    band = (near_waist < 0.022) & (uu <= half_width[rows] + 0.004) & (v >= 0.0)
    buckle = band & (uu < 0.024) & ~((uu < 0.012) & (near_waist < 0.01))
    strap = np.where((luminance[rows] > 100)[:, None], np.float32((45, 30, 20)), np.float32((215, 190, 140)))
    painted = color[rows]
    painted[band] = np.broadcast_to(strap[:, None, None, :], painted.shape)[band]
    painted[buckle] = _BUCKLE
    color[rows] = painted
    added[rows] |= band & ~garment[rows]


def _paint_collar(rows: np.ndarray, frame: _Frame, color: np.ndarray, garment: np.ndarray, added: np.ndarray) -> None:
    """Draw two lighter collar flaps with a dark outline and the neck opening between them."""
    if rows.size == 0:
        return
    uu, v = np.abs(frame.u[rows]), frame.v[rows]
    edge = 0.075 - 0.75 * uu
    flap = (v >= -0.04) & (v <= edge) & (uu <= 0.1)
    outline = flap & (edge - v < 0.012)
    opening = (v >= -0.04) & (v < 0.09) & (uu < 0.024 * (1.0 - (v + 0.04) / 0.13))
    painted = color[rows]
    painted[flap] = np.minimum(painted[flap] * 1.15 + 12.0, 255.0)
    painted[outline] *= 0.55
    painted[opening] *= 0.4
    color[rows] = painted
    added[rows] |= flap & ~garment[rows]


def _paint_buttons(
    rows: np.ndarray, frame: _Frame, color: np.ndarray, body: np.ndarray, hem_v: np.ndarray, luminance: np.ndarray
) -> None:
    """Draw a placket line down the front with round buttons in a contrasting shade."""
    if rows.size == 0:
        return
    uu, v = np.abs(frame.u[rows]), frame.v[rows]
    front = body[rows] & (v > 0.05) & (v < hem_v[rows] - 0.02)
    step = 0.075
    offset = (((v - 0.1) / step) % 1.0 - 0.5) * step
    dots = front & (uu**2 + offset**2 < 0.017**2) & (v > 0.06)
    shade = np.where(luminance[rows] > 100, np.float32(40.0), np.float32(225.0))
    painted = color[rows]
    painted[front & (uu < 0.007)] *= 0.78
    painted[dots] = np.broadcast_to(shade[:, None, None, None], painted.shape)[dots]
    color[rows] = painted


def _background(keys: np.ndarray, base: np.ndarray, y: np.ndarray, size: int, garment: np.ndarray) -> np.ndarray:
    """Return a plain studio background per item, far from the garment color, with a soft shadow."""
    tint = np.stack([_uniform(keys, _S_BG_TINT * 10 + c) for c in range(3)], axis=1) - 0.5
    level = _uniform(keys, _S_BG_LEVEL)
    luminance = base @ np.array([0.299, 0.587, 0.114], dtype=np.float32)

    # Light backdrops behind most garments, darker ones behind light garments.
    light = np.where(luminance > 165, level < 0.15, level < 0.85)
    brightness = np.where(light, 200.0 + 40.0 * level, 70.0 + 50.0 * level)
    backdrop = brightness[:, None] + 50.0 * tint
    too_close = np.linalg.norm(backdrop - base, axis=1) < 90.0
    flipped = np.where(luminance > 128, 80.0, 225.0)[:, None] + 50.0 * tint
    backdrop = np.where(too_close[:, None], flipped, backdrop)

    gradient = _lerp((-0.12, 0.12), _uniform(keys, _S_GRADIENT)).astype(np.float32)[:, None, None]
    backdrop = backdrop.astype(np.float32)
    background = backdrop[:, None, None, :] * (1.0 + gradient * (y - 0.5))[..., None]

    # A soft shadow down and to the right of the garment.
    shift = max(1, round(size / 32))
    shadow = np.zeros_like(garment)
    shadow[:, shift:, shift:] = garment[:, :-shift, :-shift]
    background *= np.where(shadow, 0.82, 1.0)[..., None]
    return np.clip(background, 0, 255).astype(np.float32)


def contact_sheet(images: np.ndarray, captions: Sequence[Sequence[str]], columns: int = 8, cell: int = 128) -> Image.Image:
    """Lay out images in a grid, each enlarged to ``cell`` pixels with caption lines below it.

    Args:
        images: ``(count, height, width, 3)`` uint8 images.
        captions: per image, a few short lines (about 20 characters fit at ``cell=128``).
        columns: images per row.
        cell: side of each enlarged image in pixels.
    """
    line_height = 11
    lines = max((len(c) for c in captions), default=0)
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + lines * line_height + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, (pixels, caption) in enumerate(zip(images, captions)):
        left = (k % columns) * cell
        top = (k // columns) * (cell + lines * line_height + 4)
        sheet.paste(Image.fromarray(pixels).resize((cell, cell), Image.NEAREST), (left, top))
        for line_number, text in enumerate(caption):
            draw.text((left + 2, top + cell + 1 + line_number * line_height), text, fill="black", font=font)
    return sheet
