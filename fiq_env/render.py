"""Renderers of a dialog: a text transcript and a picture of the shown and target images."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fiq_env.catalog import Catalog

IMAGE_SIZE = 224
TEXT_HEIGHT = 64
MARGIN = 8


def render_transcript(history: Sequence[dict], target_id: str) -> str:
    """Return the dialog so far as text, one line per turn.

    Each line gives the turn (0 is the first image, before any action), the
    shown item's id, the target's 0-based rank and the shopper's caption
    (none on the turn that ended the episode).
    """
    lines = [f"target: {target_id}"]
    for record in history:
        outcome = "  FOUND" if record["is_success"] else ""
        caption = f'"{record["caption"]}"' if record["caption"] else "(no caption: episode over)"
        rank = f"target rank {record['target_rank']}{outcome}"
        lines.append(f"turn {record['turn']}: shown {record['shown_id']} | {rank} | {caption}")
    return "\n".join(lines) + "\n"


def render_picture(
    catalog: Catalog, shown_index: int, target_index: int, caption: str, turn: int, target_rank: int
) -> np.ndarray:
    """Return a ``(height, width, 3)`` uint8 picture: the shown image, the target and the caption below.

    Images are resized to ``IMAGE_SIZE`` squares; the caption is wrapped to
    the picture's width and cut after the lines that fit.
    """
    width = 2 * IMAGE_SIZE + 3 * MARGIN
    height = IMAGE_SIZE + 2 * MARGIN + 16 + TEXT_HEIGHT
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()

    for column, (label, index) in enumerate(((f"shown (turn {turn})", shown_index), ("target", target_index))):
        left = MARGIN + column * (IMAGE_SIZE + MARGIN)
        image = catalog.load_image(index).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
        canvas.paste(image, (left, MARGIN + 16))
        draw.text((left, 2), f"{label}: {catalog.item_ids[index]}", fill=(0, 0, 0), font=font)

    text_top = MARGIN + 16 + IMAGE_SIZE + 4
    line_height = 12
    lines = [f"rank {target_rank}:"] + textwrap.wrap(caption or "(no caption)", width=width // 7)
    for number, line in enumerate(lines[: TEXT_HEIGHT // line_height]):
        draw.text((MARGIN, text_top + number * line_height), line, fill=(0, 0, 0), font=font)
    return np.asarray(canvas, dtype=np.uint8)
