"""Pixel attributes of a garment photo: garment mask, color name, lightness, solid or patterned.

The namer works in CIELAB (D65 white, sRGB input), where Euclidean distance
roughly follows perceived color difference:

1. :func:`garment_mask` separates the garment from the background. It models
   the background by clustering the pixels of a band along the image border,
   keeps the pixels far from every background cluster, and picks the
   connected region that is large and close to the image center. When that
   fails (a garment the color of its background, or a busy background) it
   falls back to a central ellipse.
2. :func:`describe_pixels` clusters the garment pixels (k-means, k = 3),
   sets aside a cluster that is a blend of the other two (fine plaid or
   stripes), and names the median color of the largest remaining cluster
   after the nearest reference color in :data:`COLOR_RGB`.
3. Lightness is the L* of that median color on a fixed dark / medium / light
   scale. A garment is patterned when a large share of its pixels lies far
   from the dominant color, with lightness differences weighted down so that
   folds and shadows count less than changes of hue.

The segmentation assumes a photo of one garment that covers the image center
against a background that reaches the border. It is not a learned model: a
textured background (wood floor, patterned bedspread) can leak into the mask,
and a print that covers most of a garment makes the print's color dominant.

NOTE: on dim real photos the fixed references bias the names: dark denim and
navy often come out "black", pale blue and off-white "gray" (measured on
clothing-small, see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from fiq_env.catalog.colors import COLOR_RGB
from fiq_env.errors import ConfigError

COLOR_NAMER_VERSION = 2
"""Changes whenever the namer's output for a fixed image may change (it invalidates caches)."""

LIGHTNESS_LEVELS = ("dark", "medium", "light")
"""Lightness words from the lowest level to the highest."""

PATTERN_VALUES = ("solid", "patterned")


@dataclass(frozen=True)
class ColorNamerConfig:
    """Settings of the mask and the namer.

    Attributes:
        analysis_size: the image is shrunk so its short side has this many
            pixels before analysis (speed; names rarely change above ~64).
        border_fraction: width of the border band that models the
            background, as a fraction of the short side.
        background_clusters: k-means clusters fitted to the border band.
        min_background_share: clusters with a smaller share of the border
            band are treated as garment touching the border, not background.
        lightness_weight: weight of the L* difference against a* and b* when
            comparing pixels with the background and with the dominant color;
            below 1 so that shadows and folds count less than hue changes.
        min_foreground_distance: smallest weighted Lab distance from the
            background that counts as garment.
        spread_factor: the foreground threshold is at least this many times
            the median distance of border pixels to their own cluster, so a
            noisy background needs a larger difference.
        min_mask_fraction: masks smaller than this share of the image fall
            back to the central ellipse.
        max_mask_fraction: masks larger than this share fall back too.
        dark_below: L* under which the garment is "dark".
        light_above: L* above which the garment is "light".
        pattern_distance: weighted Lab distance from the dominant color above
            which a garment pixel counts as a different color.
        pattern_share: share of such pixels above which the garment is
            "patterned".
    """

    analysis_size: int = 96
    border_fraction: float = 0.05
    background_clusters: int = 3
    min_background_share: float = 0.15
    lightness_weight: float = 0.5
    min_foreground_distance: float = 12.0
    spread_factor: float = 3.0
    min_mask_fraction: float = 0.04
    max_mask_fraction: float = 0.95
    dark_below: float = 35.0
    light_above: float = 65.0
    pattern_distance: float = 15.0
    pattern_share: float = 0.12

    def __post_init__(self) -> None:
        if self.analysis_size < 16:
            raise ConfigError(f"analysis_size must be at least 16 pixels, got {self.analysis_size}")
        if not 0.0 < self.border_fraction < 0.5:
            raise ConfigError(f"border_fraction must lie in (0, 0.5), got {self.border_fraction}")
        if not self.dark_below < self.light_above:
            raise ConfigError(
                f"dark_below ({self.dark_below}) must be smaller than light_above ({self.light_above})"
            )


DEFAULT_CONFIG = ColorNamerConfig()


@dataclass(frozen=True)
class PixelAttributes:
    """Attributes measured on the garment pixels of one image.

    Attributes:
        color: one of :data:`fiq_env.catalog.colors.COLOR_NAMES`.
        lightness: one of :data:`LIGHTNESS_LEVELS`.
        patterned: True when the garment shows several distinct colors.
    """

    color: str
    lightness: str
    patterned: bool

    def to_dict(self) -> dict[str, object]:
        return {"color": self.color, "lightness": self.lightness, "patterned": self.patterned}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PixelAttributes:
        return cls(color=str(data["color"]), lightness=str(data["lightness"]), patterned=bool(data["patterned"]))


# sRGB (linear) to CIE XYZ, D65 white, as in IEC 61966-2-1.
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert 8-bit sRGB values of shape ``(..., 3)`` to CIELAB (D65) of the same shape.

    Uses the sRGB transfer curve and matrix of IEC 61966-2-1 and the CIE 1976
    L*a*b* formulas.
    """
    values = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE

    epsilon = (6.0 / 29.0) ** 3
    f = np.where(xyz > epsilon, np.cbrt(xyz), xyz / (3.0 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


_REFERENCE_NAMES = tuple(COLOR_RGB)
_REFERENCE_LAB = srgb_to_lab(np.array([COLOR_RGB[name] for name in _REFERENCE_NAMES]))


def _weighted_distance(lab: np.ndarray, centers: np.ndarray, lightness_weight: float) -> np.ndarray:
    """Return distances of shape ``(n, k)`` between ``(n, 3)`` pixels and ``(k, 3)`` centers."""
    weights = np.array([lightness_weight, 1.0, 1.0])
    diff = (lab[:, None, :] - centers[None, :, :]) * weights
    return np.sqrt((diff**2).sum(axis=-1))


def _kmeans(points: np.ndarray, k: int, weights: np.ndarray, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``(n, 3)`` points; return ``(centers (k', 3), assignment (n,))``.

    Deterministic: the first center is the median, each next one the point
    farthest from the centers chosen so far. ``k'`` is below ``k`` when the
    points have fewer distinct values.
    """
    scaled = points * weights
    centers = [np.median(scaled, axis=0)]
    for _ in range(1, k):
        gaps = np.min(np.linalg.norm(scaled[:, None, :] - np.array(centers)[None], axis=-1), axis=1)
        if gaps.max() <= 1e-6:
            break
        centers.append(scaled[int(np.argmax(gaps))])
    center_array = np.array(centers)

    assignment = np.zeros(len(points), dtype=np.int64)
    for _ in range(iterations):
        assignment = np.argmin(np.linalg.norm(scaled[:, None, :] - center_array[None], axis=-1), axis=1)
        updated = np.array(
            [scaled[assignment == c].mean(axis=0) if np.any(assignment == c) else center_array[c] for c in range(len(center_array))]
        )
        if np.allclose(updated, center_array):
            break
        center_array = updated
    return center_array / weights, assignment


def _to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """Return an ``(H, W, 3)`` uint8 array from a PIL image or an array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ConfigError(f"expected an RGB image of shape (height, width, 3), got an array of shape {array.shape}")
    if array.dtype != np.uint8:
        raise ConfigError(f"expected an RGB image with dtype uint8 (0-255), got {array.dtype}")
    return array


def _shrink(rgb: np.ndarray, size: int) -> np.ndarray:
    """Shrink ``rgb`` so its short side is at most ``size`` pixels (area averaging)."""
    height, width = rgb.shape[:2]
    scale = size / min(height, width)
    if scale >= 1.0:
        return rgb
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(new_size, Image.Resampling.BOX))


def _central_ellipse(height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    dy = (rows - (height - 1) / 2) / (0.4 * height)
    dx = (cols - (width - 1) / 2) / (0.35 * width)
    return dx**2 + dy**2 <= 1.0


@dataclass(frozen=True)
class _Segmentation:
    """A garment mask and, inside it, the pixels that also differ from the background."""

    mask: np.ndarray
    distinct: np.ndarray


def _segment(lab: np.ndarray, config: ColorNamerConfig) -> _Segmentation:
    """Segment an ``(H, W, 3)`` Lab image; both returned arrays are ``(H, W)`` bool."""
    height, width = lab.shape[:2]
    band = max(1, round(config.border_fraction * min(height, width)))
    weights = np.array([config.lightness_weight, 1.0, 1.0])

    # Background model: clusters of the border band; rare clusters are garment touching the border.
    border = np.concatenate(
        [
            lab[:band].reshape(-1, 3),
            lab[-band:].reshape(-1, 3),
            lab[band:-band, :band].reshape(-1, 3),
            lab[band:-band, -band:].reshape(-1, 3),
        ]
    )
    centers, assignment = _kmeans(border, config.background_clusters, weights)
    shares = np.bincount(assignment, minlength=len(centers)) / len(border)
    background = centers[shares >= config.min_background_share]
    if len(background) == 0:
        background = centers[[int(np.argmax(shares))]]

    # Foreground: far from every background cluster, with a margin that grows with background noise.
    border_spread = _weighted_distance(border, background, config.lightness_weight).min(axis=1)
    threshold = max(config.min_foreground_distance, config.spread_factor * float(np.median(border_spread)))
    distance = _weighted_distance(lab.reshape(-1, 3), background, config.lightness_weight).min(axis=1)
    distinct = (distance > threshold).reshape(height, width)

    # Closing first joins mesh-like garments (lace) before opening removes specks.
    structure = np.ones((3, 3), dtype=bool)
    foreground = ndimage.binary_closing(distinct, structure=structure, border_value=0)
    foreground = ndimage.binary_opening(foreground, structure=structure)

    # Keep the connected region that best combines size and closeness to the center.
    components, count = ndimage.label(foreground)
    if count > 0:
        rows, cols = np.mgrid[0:height, 0:width]
        center_prior = np.exp(
            -(((rows - height / 2) / (0.5 * height)) ** 2 + ((cols - width / 2) / (0.5 * width)) ** 2)
        )
        scores = ndimage.sum(center_prior, components, index=np.arange(1, count + 1))
        foreground = components == (int(np.argmax(scores)) + 1)
        foreground = ndimage.binary_fill_holes(foreground)

    fraction = float(foreground.mean())
    if not config.min_mask_fraction <= fraction <= config.max_mask_fraction:
        ellipse = _central_ellipse(height, width)
        return _Segmentation(ellipse, ellipse)
    return _Segmentation(foreground, foreground & distinct)


def garment_mask(image: Image.Image | np.ndarray, config: ColorNamerConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Segment the garment from a plain or mildly textured background.

    Args:
        image: an RGB PIL image or an ``(H, W, 3)`` uint8 array.
        config: mask settings.

    Returns:
        ``(H, W)`` bool mask at the input's resolution, True on the garment.
        When no plausible region is found, the mask is a central ellipse
        (covering about 44% of the image), not an empty mask.
    """
    rgb = _to_rgb_array(image)
    small = _shrink(rgb, config.analysis_size)
    mask = _segment(srgb_to_lab(small), config).mask
    if mask.shape == rgb.shape[:2]:
        return mask
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (rgb.shape[1], rgb.shape[0]), Image.Resampling.NEAREST
    )
    return np.asarray(resized) > 127


def _nearest_name(lab_color: np.ndarray) -> str:
    distances = np.linalg.norm(_REFERENCE_LAB - lab_color, axis=1)
    return _REFERENCE_NAMES[int(np.argmin(distances))]


def name_color(rgb_pixels: np.ndarray) -> str:
    """Name the color of a set of pixels: the reference color nearest to their median in CIELAB.

    Args:
        rgb_pixels: uint8 sRGB values of shape ``(n, 3)`` or ``(H, W, 3)``;
            a single color of shape ``(3,)`` works too.

    Returns:
        One of :data:`fiq_env.catalog.colors.COLOR_NAMES`. The median is a
        robust center only when most pixels share one color; for a garment
        with a pattern, use :func:`describe_pixels`, which names the dominant
        cluster instead.
    """
    pixels = np.asarray(rgb_pixels).reshape(-1, 3)
    if len(pixels) == 0:
        raise ConfigError("name_color needs at least one pixel, got an empty array")
    lab = srgb_to_lab(pixels)
    return _nearest_name(np.median(lab, axis=0))


def _mixture_clusters(rgb_centers: np.ndarray, min_contrast: float = 60.0) -> set[int]:
    """Return the clusters whose sRGB center lies between two other, clearly different, centers.

    Fine patterns (plaid, thin stripes) blend two colors into pixels of an
    intermediate color, which can outnumber either pure color. Such a blend
    cluster sits near the segment joining the two pure ones, while shading of
    one color (two centers closer than ``min_contrast``) is left alone.
    """
    mixtures = set()
    count = len(rgb_centers)
    for middle in range(count):
        for first in range(count):
            for second in range(first + 1, count):
                if middle in (first, second):
                    continue
                segment = rgb_centers[second] - rgb_centers[first]
                length = float(np.linalg.norm(segment))
                if length < min_contrast:
                    continue
                t = float(np.dot(rgb_centers[middle] - rgb_centers[first], segment)) / length**2
                residual = float(np.linalg.norm(rgb_centers[middle] - (rgb_centers[first] + t * segment)))
                if 0.15 < t < 0.85 and residual < 0.2 * length:
                    mixtures.add(middle)
    return mixtures


def _garment_pixels(
    rgb: np.ndarray, mask: np.ndarray | None, config: ColorNamerConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Return the garment's pixels as ``(n, 3)`` sRGB and ``(n, 3)`` Lab arrays."""
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != rgb.shape[:2]:
            raise ConfigError(f"mask shape {mask.shape} does not match image shape {rgb.shape[:2]}")
        pixels = rgb[mask] if mask.any() else rgb.reshape(-1, 3)
        return pixels, srgb_to_lab(pixels)

    small = _shrink(rgb, config.analysis_size)
    lab_image = srgb_to_lab(small)
    segmentation = _segment(lab_image, config)
    # Holes in the garment (lace, gaps between arms) show the background: leave them out
    # unless that would drop most of the mask (a garment the color of its background).
    chosen = segmentation.distinct if segmentation.distinct.sum() >= 0.5 * segmentation.mask.sum() else segmentation.mask

    # Pixels on the garment's outline mix garment and background (resampling, JPEG chroma
    # subsampling); dropping a one-pixel rim keeps them from looking like a pattern.
    inner = ndimage.binary_erosion(chosen, structure=np.ones((3, 3), dtype=bool))
    if inner.sum() >= 0.5 * chosen.sum():
        chosen = inner
    return small[chosen], lab_image[chosen]


def describe_pixels(
    image: Image.Image | np.ndarray,
    mask: np.ndarray | None = None,
    config: ColorNamerConfig = DEFAULT_CONFIG,
) -> PixelAttributes:
    """Measure the garment's color name, lightness and pattern.

    The garment pixels are split into three color clusters. A cluster that
    is a blend of two others (see :func:`_mixture_clusters`) is set aside,
    and the largest remaining cluster's median color is named.

    Args:
        image: an RGB PIL image or an ``(H, W, 3)`` uint8 array.
        mask: optional ``(H, W)`` bool garment mask; computed with
            :func:`garment_mask` when None.
        config: namer settings.

    Returns:
        The attributes of the dominant color cluster of the garment pixels.
    """
    rgb_pixels, lab_pixels = _garment_pixels(_to_rgb_array(image), mask, config)

    # Cap the pixel count so k-means stays cheap on large masks; the stride keeps it deterministic.
    stride = max(1, len(lab_pixels) // 4000)
    rgb_pixels = rgb_pixels[::stride].astype(np.float64)
    lab_pixels = lab_pixels[::stride]

    weights = np.array([config.lightness_weight, 1.0, 1.0])
    _, assignment = _kmeans(lab_pixels, 3, weights)
    sizes = np.bincount(assignment)
    rgb_centers = np.array([rgb_pixels[assignment == c].mean(axis=0) for c in range(len(sizes))])
    candidates = [c for c in range(len(sizes)) if c not in _mixture_clusters(rgb_centers)] or list(range(len(sizes)))
    dominant = max(candidates, key=lambda c: sizes[c])
    color_lab = np.median(lab_pixels[assignment == dominant], axis=0)

    lightness_value = float(color_lab[0])
    if lightness_value < config.dark_below:
        lightness = "dark"
    elif lightness_value > config.light_above:
        lightness = "light"
    else:
        lightness = "medium"

    far = _weighted_distance(lab_pixels, color_lab[None], config.lightness_weight)[:, 0] > config.pattern_distance
    return PixelAttributes(
        color=_nearest_name(color_lab),
        lightness=lightness,
        patterned=bool(far.mean() > config.pattern_share),
    )
