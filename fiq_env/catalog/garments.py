"""The attribute groups of the synthetic garments and the words shoppers use for them.

Value words follow the Fashion IQ training captions, where shoppers write
"sleeveless", "straps", "strapless", "floral", "print", "striped", "solid",
"v-neck", "collar", "buttons", "belt", "shiny", "lace", "fitted", "loose",
"longer", "darker" and color names far more often than catalog jargon.

Ordered groups list their values from the lowest level to the highest, so
``values.index(a) < values.index(b)`` means ``b`` is "more" than ``a``
(longer, lighter, looser, lower).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fiq_env.catalog.colors import COLOR_NAMES
from fiq_env.catalog.schema import UNKNOWN, AttributeGroup
from fiq_env.errors import ConfigError

CATEGORIES = ("dress", "shirt", "toptee")

COLOR = AttributeGroup("color", "color", COLOR_NAMES)
LIGHTNESS = AttributeGroup("lightness", "color", ("dark", "medium", "light"), ordered=True, more="lighter", less="darker")
PATTERN = AttributeGroup("pattern", "texture", ("solid", "striped", "polka dot", "floral", "plaid", "graphic print"))
FABRIC = AttributeGroup("fabric", "fabric", ("cotton", "shiny", "denim", "lace", "knit"))
FIT = AttributeGroup("fit", "shape", ("fitted", "regular fit", "loose"), ordered=True, more="looser", less="tighter")
DRESS_LENGTH = AttributeGroup(
    "length", "shape", ("mini", "knee length", "midi", "maxi"), ordered=True, more="longer", less="shorter"
)
TOP_LENGTH = AttributeGroup("length", "shape", ("cropped", "hip length", "long"), ordered=True, more="longer", less="shorter")
SLEEVE_LENGTH = AttributeGroup(
    "sleeve_length",
    "part",
    ("sleeveless", "short sleeves", "elbow sleeves", "long sleeves"),
    ordered=True,
    more="longer",
    less="shorter",
    noun="sleeves",
    verb="has",
)
NECKLINE = AttributeGroup(
    "neckline",
    "part",
    ("high neck", "crew neck", "scoop neck", "v-neck"),
    ordered=True,
    more="lower",
    less="higher",
    noun="neckline",
    verb="has",
)
STRAPS = AttributeGroup("straps", "part", ("strapless", "spaghetti straps", "wide straps"), verb="has")
BELT = AttributeGroup("belt", "part", ("no belt", "belt"), absent="no belt", verb="has")
COLLAR = AttributeGroup("collar", "part", ("no collar", "collar"), absent="no collar", verb="has")
BUTTONS = AttributeGroup("buttons", "part", ("no buttons", "buttons"), absent="no buttons", verb="has")
STYLE = AttributeGroup("style", "style", ("casual", "elegant", "sporty"))

_GROUPS: dict[str, tuple[AttributeGroup, ...]] = {
    "dress": (COLOR, LIGHTNESS, PATTERN, FABRIC, DRESS_LENGTH, FIT, SLEEVE_LENGTH, NECKLINE, STRAPS, BELT, STYLE),
    "shirt": (COLOR, LIGHTNESS, PATTERN, FABRIC, TOP_LENGTH, FIT, SLEEVE_LENGTH, NECKLINE, COLLAR, BUTTONS, STYLE),
    "toptee": (COLOR, LIGHTNESS, PATTERN, FABRIC, TOP_LENGTH, FIT, SLEEVE_LENGTH, NECKLINE, STRAPS, STYLE),
}

DENIM_COLORS = ("blue", "navy", "black", "gray", "white")
"""Denim items take one of these colors only, as real denim mostly does."""

# Sampling weights of the groups drawn independently, per category. Groups
# missing here are uniform. Style is never sampled, because it follows from
# visible attributes (see derive_style).
_WEIGHTS: dict[str, dict[str, tuple[float, ...]]] = {
    "dress": {
        "pattern": (0.3, 0.14, 0.14, 0.14, 0.14, 0.14),
        "sleeve_length": (0.34, 0.22, 0.2, 0.24),
        "belt": (0.7, 0.3),
    },
    "shirt": {
        "pattern": (0.3, 0.14, 0.14, 0.14, 0.14, 0.14),
        "sleeve_length": (0.12, 0.38, 0.2, 0.3),
        "collar": (0.55, 0.45),
    },
    "toptee": {
        "pattern": (0.3, 0.14, 0.14, 0.14, 0.14, 0.14),
        "sleeve_length": (0.3, 0.3, 0.18, 0.22),
    },
}

_GENDER = {"dress": "Women's", "shirt": "Men's", "toptee": "Women's"}
_NOUN = {"dress": "dress", "shirt": "shirt", "toptee": "top"}


def check_category(category: str) -> None:
    """Raise :class:`ConfigError` unless ``category`` is one of :data:`CATEGORIES`."""
    if category not in CATEGORIES:
        raise ConfigError(f"unknown synthetic garment category {category!r}; expected one of {CATEGORIES}")


def groups_for(category: str) -> tuple[AttributeGroup, ...]:
    """Return the attribute groups of ``category`` in a fixed order."""
    check_category(category)
    return _GROUPS[category]


def sample_group_values(category: str, num_items: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw every group's value code for ``num_items`` items, vectorized.

    The draws follow these rules, so some groups are UNKNOWN for some items:

    - straps apply only to sleeveless items,
    - a strapless item and a shirt with a collar have no neckline value,
    - denim items take a color from :data:`DENIM_COLORS`,
    - style comes from :func:`derive_style`.

    Returns:
        Group name to a ``(num_items,)`` int16 array of value indices or UNKNOWN.
    """
    groups = {g.name: g for g in groups_for(category)}
    weights = _WEIGHTS[category]
    values: dict[str, np.ndarray] = {}

    # Independent draws, one group after another in a fixed order.
    for name, group in groups.items():
        if name in ("style", "buttons"):
            continue
        p = weights.get(name)
        draws = rng.choice(len(group.values), size=num_items, p=p)
        values[name] = draws.astype(np.int16)

    # Denim recolors its items with the denim palette.
    denim = values["fabric"] == FABRIC.values.index("denim")
    palette = np.array([COLOR.values.index(c) for c in DENIM_COLORS], dtype=np.int16)
    values["color"][denim] = palette[rng.integers(0, len(palette), size=int(denim.sum()))]

    # Parts that exist only for some shapes.
    sleeveless = values["sleeve_length"] == SLEEVE_LENGTH.values.index("sleeveless")
    if "straps" in values:
        values["straps"][~sleeveless] = UNKNOWN
        strapless = values["straps"] == STRAPS.values.index("strapless")
        values["neckline"][strapless] = UNKNOWN
    if "collar" in values:
        collar = values["collar"] == COLLAR.values.index("collar")
        values["neckline"][collar] = UNKNOWN
        # Collared shirts mostly button up the front.
        button_odds = np.where(collar, 0.75, 0.2)
        values["buttons"] = (rng.random(num_items) < button_odds).astype(np.int16)

    values["style"] = derive_style(values)
    return values


def derive_style(values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Return each item's style code from its visible attributes.

    Shiny and lace items are elegant. Other striped or graphic-print items in
    cotton or knit are sporty, and everything else is casual.
    """
    fabric = values["fabric"]
    pattern = values["pattern"]
    elegant = np.isin(fabric, [FABRIC.values.index("shiny"), FABRIC.values.index("lace")])
    sporty_pattern = np.isin(pattern, [PATTERN.values.index("striped"), PATTERN.values.index("graphic print")])
    sporty_fabric = np.isin(fabric, [FABRIC.values.index("cotton"), FABRIC.values.index("knit")])
    style = np.full(fabric.shape, STYLE.values.index("casual"), dtype=np.int16)
    style[sporty_pattern & sporty_fabric] = STYLE.values.index("sporty")
    style[elegant] = STYLE.values.index("elegant")
    return style


def make_title(category: str, words: Mapping[str, str | None]) -> str:
    """Write a product title from one item's value words (None where a group does not apply).

    Example: "Women's light blue floral lace maxi dress with long sleeves, v-neck and belt".
    """
    head = [_GENDER[category]]
    if words["lightness"] != "medium":
        head.append(str(words["lightness"]))
    head.append(str(words["color"]))
    if words["pattern"] != "solid":
        head.append(str(words["pattern"]))
    head.append(str(words["fabric"]))
    if words["fit"] != "regular fit":
        head.append(str(words["fit"]))
    head.append(str(words["length"]))
    parts = []
    if words.get("straps") == "strapless":
        head.append("strapless")
    elif words["sleeve_length"] == "sleeveless":
        head.append("sleeveless")
    else:
        parts.append(str(words["sleeve_length"]))
    head.append(_NOUN[category])

    # Parts come after "with", skipping absent values ("no belt").
    for name in ("straps", "neckline", "collar", "buttons", "belt"):
        word = words.get(name)
        if word is not None and word != "strapless" and not word.startswith("no "):
            parts.append(word)
    if not parts:
        return " ".join(head)
    tail = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{' '.join(head)} with {tail}"
