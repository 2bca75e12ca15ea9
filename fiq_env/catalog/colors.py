"""The named garment colors shared by the synthetic renderer and the pixel color namer.

The fifteen names are among the color words shoppers use most in the Fashion IQ
captions. Each has one reference sRGB value; the synthetic renderer draws
garments in shades around it and the color namer maps measured pixels back to
the nearest name.
"""

from __future__ import annotations

COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25),
    "white": (240, 240, 236),
    "gray": (128, 128, 128),
    "red": (200, 30, 35),
    "pink": (240, 140, 175),
    "orange": (240, 130, 30),
    "yellow": (240, 215, 50),
    "green": (40, 140, 60),
    "blue": (40, 90, 200),
    "navy": (25, 35, 90),
    "purple": (120, 50, 150),
    "brown": (115, 70, 35),
    "beige": (215, 195, 160),
    "maroon": (110, 20, 40),
    "teal": (20, 128, 128),
}

COLOR_NAMES: tuple[str, ...] = tuple(COLOR_RGB)
