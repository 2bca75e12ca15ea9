"""Attribute groups: the garment properties a catalog labels and a shopper talks about.

A catalog describes each item by a value in every attribute group (``color``,
``sleeve_length``, ...). Every value except a group's ``absent`` value is one
attribute word of the catalog's multi-hot label vocabulary. Ordered groups
(length, sleeve length, lightness, fit, neckline depth) also support
comparisons such as "longer" or "darker"; their values are listed from the
lowest level to the highest.
"""

from __future__ import annotations

from dataclasses import dataclass

# The attribute types of the Fashion IQ paper (texture, fabric, shape, part,
# style, from the DeepFashion vocabulary), plus color.
ATTRIBUTE_TYPES = ("texture", "fabric", "shape", "part", "style", "color")

UNKNOWN = -1
"""Group value of an item whose value in that group is unknown or does not apply."""


@dataclass(frozen=True)
class AttributeGroup:
    """One garment property with mutually exclusive values.

    Attributes:
        name: identifier, for example ``"sleeve_length"``.
        type: one of :data:`ATTRIBUTE_TYPES`.
        values: the attribute words, lowest level first for ordered groups.
        ordered: whether the values form a scale that comparisons may use.
        more: comparative for a higher level ("longer"), ordered groups only.
        less: comparative for a lower level ("shorter"), ordered groups only.
        noun: what the comparative qualifies ("sleeves" in "longer sleeves");
            empty when the comparative is used alone ("darker").
        absent: a value that means the property is absent ("no belt"); it is
            not exported as an attribute word.
        verb: how a caption states a value: "is" ("is red") or "has"
            ("has long sleeves").
    """

    name: str
    type: str
    values: tuple[str, ...]
    ordered: bool = False
    more: str = ""
    less: str = ""
    noun: str = ""
    absent: str | None = None
    verb: str = "is"

    def __post_init__(self) -> None:
        if self.type not in ATTRIBUTE_TYPES:
            raise ValueError(f"attribute group {self.name!r} has type {self.type!r}; expected one of {ATTRIBUTE_TYPES}")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"attribute group {self.name!r} repeats a value: {self.values}")
        if self.ordered and not (self.more and self.less):
            raise ValueError(f"ordered attribute group {self.name!r} needs 'more' and 'less' comparatives")
        if self.absent is not None and self.absent not in self.values:
            raise ValueError(f"absent value {self.absent!r} of group {self.name!r} is not one of {self.values}")

    def attribute_words(self) -> tuple[str, ...]:
        """Return the values exported as attribute words (all but ``absent``)."""
        return tuple(v for v in self.values if v != self.absent)
