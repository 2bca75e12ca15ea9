"""The rule-based ``template`` user simulator: true relative captions from item attributes.

The simulator compares the attribute group values of a reference item and a
target item and writes a short caption that completes "Unlike this one, the
one I want ...", for example "is red with longer sleeves". It works with any
catalog's :class:`~fiq_env.catalog.schema.AttributeGroup` list.

Every caption is true. Each statement it makes is recorded as a :class:`Fact`:

- ``Fact(group, "is", code)``: the target's value in ``group`` is ``code``.
- ``Fact(group, "not", code)``: the target's value is known and is not ``code``.
- ``Fact(group, "more", None)`` / ``Fact(group, "less", None)``: the group is
  ordered, both values are known and the target's is higher / lower.

Caption forms follow the shares that the Fashion IQ authors (Wu et al., CVPR
2021, Table 2) counted on 200 real captions: direct references 49%,
comparisons 32%, both 19%; one attribute 30.5%, several 69.5%; negations
3.5%. A form that a pair cannot support (a comparison between items whose
ordered groups are equal or unknown) falls back to one it can.

When no known attribute differs (for example a pair of identical items) the
caption names the target's own attributes, which stays true. When the target
has no known attribute at all, the caption is "is a different one" (or "is the
same one" when reference and target are the same item).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fiq_env.catalog import UNKNOWN, AttributeGroup, Catalog
from fiq_env.errors import ConfigError
from fiq_env.text import Vocabulary
from simulators import register
from simulators.base import UserSimulator

logger = logging.getLogger(__name__)

FORMS = ("direct", "comparison", "both")
RELATIONS = ("is", "not", "more", "less")

# Captions for targets without a single known attribute value.
DIFFERENT_ITEM_CAPTION = "is a different one"
SAME_ITEM_CAPTION = "is the same one"

# Relative weight of each attribute type when choosing what to mention first;
# real shoppers name colors and prints most, then shape and parts.
DEFAULT_TYPE_WEIGHTS = {"color": 3.0, "texture": 2.0, "part": 1.5, "shape": 1.5, "fabric": 1.0, "style": 1.0}

# Spelling variants that shoppers use for the same value word.
_SYNONYMS = {"gray": ("grey",), "grey": ("gray",), "solid": ("plain",)}

# Pattern nouns and the adjective shoppers use for them ("has stripes", "is striped").
_PATTERN_ADJECTIVES = {"stripes": "striped", "dots": "dotted", "checks": "checked", "ruffles": "ruffled"}
_PATTERN_NOUNS = {adjective: noun for noun, adjective in _PATTERN_ADJECTIVES.items()}

# Part nouns with the adjective shoppers build from them ("has long sleeves", "is long sleeved").
_PART_ADJECTIVES = {"sleeves": "sleeved"}

# Pattern words that read well before "print" or "pattern" ("has a floral print").
_PRINT_WORDS = frozenset(
    {
        "floral",
        "graphic",
        "plaid",
        "animal",
        "striped",
        "geometric",
        "leopard",
        "paisley",
        "abstract",
        "tribal",
        "dotted",
        "polka dot",
    }
)

# Everyday nouns for catalog categories; a category missing here is used as is
# when it is a plain word.
_CATEGORY_NOUNS = {"toptee": "top", "tshirt": "t-shirt", "longsleeve": "top"}


class Fact(NamedTuple):
    """One statement of a caption about the target, relative to the reference.

    Attributes:
        group: attribute group name.
        relation: one of :data:`RELATIONS`.
        value: the value code for ``"is"`` and ``"not"``; None for comparisons.
    """

    group: str
    relation: str
    value: int | None


class CaptionWithFacts(NamedTuple):
    """A caption with the form it was written in and the facts it states.

    Attributes:
        text: the caption.
        form: one of :data:`FORMS`.
        facts: the statements, in the order the caption makes them.
        negation: whether one statement is phrased as a negation ("no belt").
    """

    text: str
    form: str
    facts: tuple[Fact, ...]
    negation: bool


@dataclass(frozen=True)
class TemplateConfig:
    """Caption form shares and length limits of the template simulator.

    The form and count shares default to the ones measured on real Fashion IQ
    captions. They are targets: pairs that cannot support a form shift the
    observed shares towards direct references.

    Attributes:
        direct: share of captions that only name target attributes.
        comparison: share that only compare ordered attributes ("is darker").
        both: share that do both; ``direct + comparison + both`` must be 1.
        single: share of captions that state one attribute (the rest state 2 or more).
        three: share of several-attribute captions that state 3 attributes rather than 2
            (chosen, not measured, to keep the mean length near the real 5.3 words).
        negation: share of captions with one negated statement ("no belt", "is not red").
        max_words: a phrase variant that would push the caption past this many
            words is replaced by the shortest variant of the same statement.
        type_weights: attribute type to relative chance of being mentioned first.
        group_weights: group name to weight, overriding ``type_weights``.
    """

    direct: float = 0.49
    comparison: float = 0.32
    both: float = 0.19
    single: float = 0.305
    three: float = 0.15
    negation: float = 0.035
    max_words: int = 8
    type_weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_TYPE_WEIGHTS.items())
    group_weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("direct", "comparison", "both", "single", "three", "negation"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"TemplateConfig.{name} must be a share in [0, 1], got {value}")
        total = self.direct + self.comparison + self.both
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"TemplateConfig direct + comparison + both must sum to 1, got {total:.4f}; rescale them")
        if self.single > 1.0 - self.both + 1e-9:
            raise ConfigError(
                f"TemplateConfig.single={self.single} exceeds the share of captions that may state one attribute "
                f"(1 - both = {1.0 - self.both:.3f}), because 'both' captions state at least two"
            )
        if self.negation > self.direct + self.both + 1e-9:
            raise ConfigError(
                f"TemplateConfig.negation={self.negation} exceeds direct + both = {self.direct + self.both:.3f}; "
                "negations replace a direct statement, so lower it"
            )
        if self.max_words < 2:
            raise ConfigError(f"TemplateConfig.max_words must be at least 2, got {self.max_words}")

    @classmethod
    def preset(cls, name: str) -> TemplateConfig:
        """Return a named preset: ``"paper"`` (Fashion IQ shares) or ``"cpu"`` (the same; captions cost no compute)."""
        if name in ("paper", "cpu"):
            return cls()
        raise ConfigError(f"unknown TemplateConfig preset {name!r}; use 'paper' or 'cpu'")


class _Phrases:
    """Phrase variants for one statement: ``lead`` opens a caption, ``cont`` continues one.

    Word counts are stored beside the variants so that rendering never splits strings.
    """

    __slots__ = ("lead", "cont", "lead_words", "cont_words", "min_lead", "min_cont")

    def __init__(self, lead: Sequence[str], cont: Sequence[str]) -> None:
        self.lead = tuple(lead)
        self.cont = tuple(cont)
        self.lead_words = tuple(len(p.split()) for p in self.lead)
        self.cont_words = tuple(len(p.split()) for p in self.cont)
        self.min_lead = min(self.lead_words)
        self.min_cont = min(self.cont_words)


def _article(phrase: str) -> str:
    """Return ``phrase`` with "a" or "an" in front, or unchanged when it reads as a plural."""
    if phrase.endswith("s") and not phrase.endswith("ss"):
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _is_adjective(word: str) -> bool:
    """Guess whether a value word of a "has" group reads as an adjective ("sleeveless", "belted").

    NOTE: a suffix test, so a noun value such as "bed" would be taken for an adjective.
    """
    return word.endswith(("less", "ed"))


def _category_noun(category: str) -> str | None:
    noun = _CATEGORY_NOUNS.get(category, category)
    return noun if noun.replace("-", "").isalpha() else None


class _PhraseBook:
    """Phrase tables for every statement the simulator can make about one catalog's groups."""

    def __init__(self, groups: Sequence[AttributeGroup], category_noun: str | None) -> None:
        self.direct: list[list[_Phrases | None]] = []
        self.contrast: list[list[_Phrases | None]] = []
        self.negated: list[list[_Phrases | None]] = []
        self.absent: list[_Phrases | None] = []
        self.more: list[_Phrases | None] = []
        self.less: list[_Phrases | None] = []

        # A comparative used by two groups ("shorter" length and "shorter" sleeves)
        # is qualified by the group name when the group has no noun of its own.
        comparatives = [w for g in groups if g.ordered for w in (g.more, g.less)]
        shared = {w for w in comparatives if comparatives.count(w) > 1}

        for group in groups:
            self.direct.append([self._direct(group, code, category_noun) for code in range(len(group.values))])
            self.contrast.append([self._contrast(group, code, self.direct[-1][code]) for code in range(len(group.values))])
            self.negated.append([self._negated(group, code) for code in range(len(group.values))])
            self.absent.append(self._absent(group))
            qualify = bool(shared & {group.more, group.less}) and not group.noun
            for table, word in ((self.more, group.more), (self.less, group.less)):
                table.append(self._comparison(group, word, category_noun, qualify) if group.ordered else None)

    def all_phrases(self) -> list[str]:
        """Return every phrase variant in the tables, for building the vocabulary."""
        tables = [p for row in self.direct + self.contrast + self.negated for p in row] + self.absent + self.more + self.less
        return [text for phrases in tables if phrases is not None for text in phrases.lead + phrases.cont]

    @staticmethod
    def _noun_phrase(group: AttributeGroup, word: str) -> str:
        """Return what a "has" group has: "long sleeves", "a belt", "v-neck neckline"."""
        noun = group.noun
        # A single word such as "long" needs the noun; "short sleeves" or "v-neck" already names the part.
        if noun and " " not in word and noun.rstrip("s") not in word:
            return _article(f"{word} {noun}")
        return _article(word)

    def _direct(self, group: AttributeGroup, code: int, category_noun: str | None) -> _Phrases | None:
        word = group.values[code]
        if word == group.absent and not _is_adjective(word):
            return None  # Only sayable as a negation ("no belt").
        words = (word, *_SYNONYMS.get(word, ()))

        if group.verb == "has" and not _is_adjective(word):
            things = [self._noun_phrase(group, w) for w in words]
            lead = [f"has {thing}" for thing in things]
            cont = [f"with {thing}" for thing in things] + [f"and has {thing}" for thing in things]
            if category_noun:
                lead.append(f"is {_article(category_noun)} with {things[0]}")
            adjective = _PATTERN_ADJECTIVES.get(word)
            if adjective:
                lead.append(f"is {adjective}")
                cont.append(f"and is {adjective}")
            part_adjective = _PART_ADJECTIVES.get(group.noun)
            if part_adjective and word.endswith(f" {group.noun}") and word.count(" ") == 1:
                described = f"{word.split()[0]} {part_adjective}"
                lead.append(f"is {described}")
                cont.append(f"and {described}")
            return _Phrases(tuple(lead), tuple(cont))

        # "graphic print" is something a garment has, not something it is.
        if word.endswith((" print", " pattern")):
            thing = _article(word)
            return _Phrases((f"has {thing}",), (f"with {thing}", f"and has {thing}"))

        # A pattern noun in an "is" group reads as its adjective ("is striped").
        adjective = _PATTERN_ADJECTIVES.get(word)
        if adjective:
            words = (adjective,)
        lead = [f"is {w}" for w in words]
        cont = [f"and is {w}" for w in words]
        if not (group.type == "color" and group.ordered):
            # A bare level reads wrongly after another attribute ("has a belt and medium").
            cont += [f"and {w}" for w in words]
        noun = _PATTERN_NOUNS.get(words[0], word if adjective else None)
        if noun:
            lead.append(f"has {noun}")
            cont.append(f"with {noun}")
        if group.type == "color":
            lead += [f"is {w} in color" for w in words] + [f"is {w} colored" for w in words]
            cont += [f"and {w} in color" for w in words]
            if not group.ordered:
                # Hues read well after "in" ("with long sleeves in black"); levels do not ("in medium").
                cont += [f"in {w}" for w in words]
        if words[0] in _PRINT_WORDS:
            lead += [f"has a {words[0]} print", f"has a {words[0]} pattern"]
            cont += [f"with a {words[0]} print", f"with a {words[0]} pattern"]
        if category_noun:
            lead.append(f"is {_article(f'{words[0]} {category_noun}')}")
        return _Phrases(tuple(lead), tuple(cont))

    @staticmethod
    def _contrast(group: AttributeGroup, code: int, direct: _Phrases | None) -> _Phrases | None:
        """Direct phrases for a target whose value is known to differ from the reference's.

        Style words then also read as comparisons ("is more casual"), which
        would be false for two items of the same style.
        """
        if direct is None or group.type != "style" or group.verb != "is":
            return None
        word = group.values[code]
        return _Phrases(direct.lead + (f"is more {word}",), direct.cont + (f"and more {word}",))

    def _negated(self, group: AttributeGroup, code: int) -> _Phrases | None:
        word = group.values[code]
        if word == group.absent and not _is_adjective(word):
            return None
        if group.verb == "has" and not _is_adjective(word):
            thing = self._noun_phrase(group, word)
            bare = thing.split(" ", 1)[1] if thing.startswith(("a ", "an ")) else thing
            return _Phrases((f"has no {bare}", f"is without {thing}"), (f"and no {bare}", f"without {thing}"))
        word = _PATTERN_ADJECTIVES.get(word, word)
        if group.type == "style":
            return _Phrases((f"is not {word}", f"is less {word}"), (f"and is not {word}", f"and less {word}"))
        return _Phrases((f"is not {word}",), (f"and is not {word}", f"and not {word}"))

    @staticmethod
    def _absent(group: AttributeGroup) -> _Phrases | None:
        """Build the phrases stating that the target has the group's ``absent`` value ("has no belt").

        An absent value that reads as a negation ("no belt") is written as is.
        Otherwise the group's noun is negated ("no straps"), and a group with
        neither gets None.
        """
        absent = group.absent
        if absent is None or _is_adjective(absent):
            return None
        if absent.startswith("no "):
            thing = absent[3:]
        elif group.noun:
            thing = group.noun
        else:
            return None
        return _Phrases(
            (f"has no {thing}", f"is without {_article(thing)}"), (f"and no {thing}", f"with no {thing}")
        )

    @staticmethod
    def _comparison(group: AttributeGroup, comparative: str, category_noun: str | None, qualify: bool) -> _Phrases:
        if qualify:
            # "shorter in length", or "a shorter dress" when the group name is not a plain word.
            lead, cont = [], []
            if group.name.isalpha():
                lead.append(f"is {comparative} in {group.name}")
                cont += [f"and {comparative} in {group.name}", f"and is {comparative} in {group.name}"]
            if category_noun:
                lead.append(f"is {_article(f'{comparative} {category_noun}')}")
                cont.append(f"and is {_article(f'{comparative} {category_noun}')}")
            if lead:
                return _Phrases(lead, cont)
        if group.noun:
            thing = _article(f"{comparative} {group.noun}")
            lead = [f"has {thing}"]
            cont = [f"with {thing}", f"and has {thing}"]
            return _Phrases(tuple(lead), tuple(cont))

        lead = [f"is {comparative}"]
        cont = [f"and is {comparative}", f"and {comparative}"]
        if group.type == "color":
            lead += [f"is {comparative} in color", f"is {_article(comparative)} color", f"is {_article(comparative)} shade"]
            cont += [f"and {comparative} in color", f"and is {_article(comparative)} color"]
        if category_noun:
            lead.append(f"is {_article(f'{comparative} {category_noun}')}")
        return _Phrases(tuple(lead), tuple(cont))


def verify_facts(catalog: Catalog, reference: int, target: int, facts: Sequence[Fact]) -> list[str]:
    """Check each fact against the catalog's group values.

    Returns:
        One message per false or unverifiable fact; an empty list means every
        fact holds for the pair.
    """
    problems = []
    for fact in facts:
        values = catalog.group_values.get(fact.group)
        if values is None:
            problems.append(f"{fact}: no group {fact.group!r} in the catalog")
            continue
        t, r = int(values[target]), int(values[reference])
        if fact.relation == "is":
            holds = t == fact.value
        elif fact.relation == "not":
            holds = t != UNKNOWN and t != fact.value
        elif fact.relation in ("more", "less"):
            ordered = catalog.group(fact.group).ordered
            known = ordered and t != UNKNOWN and r != UNKNOWN
            holds = known and (t > r if fact.relation == "more" else t < r)
        else:
            problems.append(f"{fact}: unknown relation {fact.relation!r}")
            continue
        if not holds:
            problems.append(f"{fact} is false for target {target} (value {t}) and reference {reference} (value {r})")
    return problems


@register("template")
class TemplateSimulator(UserSimulator):
    """Rule-based shopper that states true attribute differences between two items.

    Args:
        catalog: the catalog whose ``groups`` and ``group_values`` describe the items.
        config: caption form shares and limits, or a preset name (``"paper"``, ``"cpu"``).

    All random choices of a batch come from one ``rng.random`` call, so the
    same generator state gives the same captions. The simulator cannot
    mention attributes the catalog does not label, so a catalog with few
    groups gets captions with few distinct words.
    """

    name = "template"

    def __init__(self, catalog: Catalog, config: TemplateConfig | str | None = None) -> None:
        super().__init__(catalog)
        if config is None:
            config = TemplateConfig()
        elif isinstance(config, str):
            config = TemplateConfig.preset(config)
        self.config = config

        groups = tuple(catalog.groups)
        self._groups = groups
        self._group_names = tuple(g.name for g in groups)
        self._book = _PhraseBook(groups, _category_noun(catalog.category))

        # Item values as one (num_items, num_groups) matrix, for batched lookup.
        num_items = len(catalog)
        if groups:
            self._values = np.stack([np.asarray(catalog.group_values[g.name], dtype=np.int16) for g in groups], axis=1)
        else:
            self._values = np.zeros((num_items, 0), dtype=np.int16)
        self._build_lookup_tables()
        self._set_probabilities()

        texts = self._book.all_phrases() + [DIFFERENT_ITEM_CAPTION, SAME_ITEM_CAPTION]
        self._vocabulary = Vocabulary.build(texts)
        if not groups:
            logger.warning("catalog %r has no attribute groups; template captions will not describe items", catalog)

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    # ------------------------------------------------------------------ setup

    def _build_lookup_tables(self) -> None:
        """Tabulate which statements each (group, value) supports, with UNKNOWN mapped to the last column."""
        num_groups = len(self._groups)
        width = max((len(g.values) for g in self._groups), default=0) + 1
        self._sayable = np.zeros((num_groups, width), dtype=bool)
        self._negatable = np.zeros((num_groups, width), dtype=bool)
        self._absent_sayable = np.zeros((num_groups, width), dtype=bool)
        for gi, group in enumerate(self._groups):
            for code in range(len(group.values)):
                self._sayable[gi, code] = self._book.direct[gi][code] is not None
                self._negatable[gi, code] = self._book.negated[gi][code] is not None
            if self._book.absent[gi] is not None:
                self._absent_sayable[gi, group.values.index(group.absent)] = True
        self._ordered = np.array([g.ordered for g in self._groups], dtype=bool)

        type_weights = dict(self.config.type_weights)
        group_weights = dict(self.config.group_weights)
        weights = [group_weights.get(g.name, type_weights.get(g.type, 1.0)) for g in self._groups]
        if any(w <= 0 for w in weights):
            raise ConfigError(f"group weights must be positive, got {dict(zip(self._group_names, weights))}")
        self._inverse_weights = 1.0 / np.array(weights, dtype=np.float64)

    def _set_probabilities(self) -> None:
        """Turn the marginal shares into the conditional chances used per caption."""
        c = self.config
        self._form_cdf = np.cumsum([c.direct, c.comparison, c.both]).tolist()
        one_allowed = c.direct + c.comparison
        self._single_given_one_form = c.single / one_allowed if one_allowed > 0 else 0.0
        with_direct = c.direct + c.both
        self._negation_given_direct = c.negation / with_direct if with_direct > 0 else 0.0

    # --------------------------------------------------------------- describe

    def _describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        return [caption.text for caption in self._write(reference, target, self._draw(rng, len(target)))]

    def describe_rows(
        self, reference: np.ndarray, target: np.ndarray, rngs: list[np.random.Generator]
    ) -> list[str]:
        """Return one caption per pair, drawing row ``i``'s random numbers only from ``rngs[i]``.

        Batched: each row draws exactly what a one-pair :meth:`describe` call
        draws, so row ``i`` gets the same caption and leaves ``rngs[i]`` in the
        same state as ``describe(reference[i:i+1], target[i:i+1], rngs[i])``.
        """
        reference = np.asarray(reference, dtype=np.int64).reshape(-1)
        target = np.asarray(target, dtype=np.int64).reshape(-1)
        if len(rngs) != len(target):
            raise ConfigError(f"describe_rows needs one generator per pair, got {len(rngs)} for {len(target)} pairs")
        if not rngs:
            return []
        reference, target = self.validate_pairs(reference, target, rngs[0])
        for rng in rngs:
            if not isinstance(rng, np.random.Generator):
                raise ConfigError(f"rngs must hold numpy.random.Generator objects, got {type(rng).__name__}")
        draws = np.concatenate([self._draw(rng, 1) for rng in rngs])
        return [caption.text for caption in self._write(reference, target, draws)]

    def _draw(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """Draw a batch's random numbers: 4 choice columns, one ranking key per group, 3 phrase picks."""
        return rng.random((batch, 4 + len(self._groups) + 3))

    def describe_with_facts(
        self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> list[CaptionWithFacts]:
        """Return each caption with its form and the facts it states.

        Draws the same random numbers as :meth:`describe`, so both give the
        same captions for the same generator state.
        """
        reference, target = self.validate_pairs(reference, target, rng)
        return self._write(reference, target, self._draw(rng, len(target)))

    def _write(self, reference: np.ndarray, target: np.ndarray, draws: np.ndarray) -> list[CaptionWithFacts]:
        """Write the captions of a validated batch from its ``(batch, width)`` random numbers."""
        batch = len(target)
        num_groups = len(self._groups)
        groups = np.arange(num_groups)

        # (batch, groups) values and which statements each pair supports.
        t = self._values[target].astype(np.int64)
        r = self._values[reference].astype(np.int64)
        known_t = t != UNKNOWN
        known_both = known_t & (r != UNKNOWN)
        differ = known_both & (t != r)
        sayable = self._sayable[groups, t] & known_t
        mention = sayable & (t != r)
        comparable = differ & self._ordered
        negatable = differ & (self._negatable[groups, r] | self._absent_sayable[groups, t])

        # Weighted random order of groups (Efraimidis-Spirakis keys): higher key first.
        keys = draws[:, 4 : 4 + num_groups] ** self._inverse_weights
        order = np.argsort(-keys, axis=1, kind="stable")

        # The per-caption work indexes Python lists, which is faster than
        # indexing numpy arrays one element at a time.
        same_item = (target == reference).tolist()
        draws_rows, order_rows = draws.tolist(), order.tolist()
        t_rows, r_rows = t.tolist(), r.tolist()
        mention_rows, sayable_rows = mention.tolist(), sayable.tolist()
        comparable_rows, negatable_rows = comparable.tolist(), negatable.tolist()

        captions = []
        for i in range(batch):
            row = order_rows[i]
            mention_i, sayable_i = mention_rows[i], sayable_rows[i]
            comparable_i, negatable_i = comparable_rows[i], negatable_rows[i]
            direct_pool = [g for g in row if mention_i[g]] or [g for g in row if sayable_i[g]]
            compare_pool = [g for g in row if comparable_i[g]]
            negate_pool = [g for g in row if negatable_i[g]]
            captions.append(
                self._compose(
                    same_item[i], draws_rows[i], t_rows[i], r_rows[i], direct_pool, compare_pool, negate_pool
                )
            )
        return captions

    def _compose(
        self,
        same_item: bool,
        draws: list[float],
        t: list[int],
        r: list[int],
        direct_pool: list[int],
        compare_pool: list[int],
        negate_pool: list[int],
    ) -> CaptionWithFacts:
        """Choose the form, the groups and the phrases of one caption."""
        u_form, u_count, u_negation, u_split = draws[:4]
        picks = draws[-3:]

        form = FORMS[min(bisect.bisect_right(self._form_cdf, u_form), 2)]
        if form == "both":
            count = 3 if u_count < self.config.three else 2
        elif u_count < self._single_given_one_form:
            count = 1
        else:
            count = 3 if (u_count - self._single_given_one_form) / (1 - self._single_given_one_form) < self.config.three else 2

        # Fall back to a form the pair supports.
        other_direct = [g for g in direct_pool if g not in compare_pool[:1]]
        if form == "both" and not (compare_pool and other_direct):
            form = "comparison" if compare_pool and not direct_pool else "direct"
        if form == "comparison" and not compare_pool:
            form = "direct"
        if form == "direct" and not direct_pool:
            if compare_pool:
                form = "comparison"
            elif negate_pool:
                form = "direct"
            else:
                text = SAME_ITEM_CAPTION if same_item else DIFFERENT_ITEM_CAPTION
                return CaptionWithFacts(text, "direct", (), False)

        # Choose the groups: comparisons first in the pool's random order, then direct statements.
        if form == "comparison":
            compared = compare_pool[:count]
            stated: list[int] = []
        elif form == "both":
            num_compared = 2 if count == 3 and u_split < 0.5 and len(compare_pool) > 1 else 1
            compared = compare_pool[:num_compared]
            stated = [g for g in direct_pool if g not in compared][: count - num_compared]
        else:
            compared = []
            stated = direct_pool[:count]

        statements: list[tuple[Fact, _Phrases]] = []
        for g in stated:
            phrases = self._book.direct[g][t[g]]
            if r[g] != UNKNOWN and r[g] != t[g]:
                phrases = self._book.contrast[g][t[g]] or phrases
            statements.append((Fact(self._group_names[g], "is", t[g]), phrases))

        # A negation replaces the last direct statement (or is the only statement).
        negation = False
        negatable = [g for g in negate_pool if g not in compared]
        if form != "comparison" and negatable and (u_negation < self._negation_given_direct or not statements):
            g = next((s for s in reversed(stated) if s in negatable), negatable[0])
            if g in stated:
                statements.pop(stated.index(g))
            elif statements:
                statements.pop()
            statements.append(self._negation(g, t, r))
            negation = True

        for g in compared:
            more = t[g] > r[g]
            phrases = self._book.more[g] if more else self._book.less[g]
            fact = Fact(self._group_names[g], "more" if more else "less", None)
            statements.insert(len(statements) - negation, (fact, phrases))

        text = self._render([phrases for _, phrases in statements], picks)
        return CaptionWithFacts(text, form, tuple(fact for fact, _ in statements), negation)

    def _negation(self, g: int, t: list[int], r: list[int]) -> tuple[Fact, _Phrases]:
        group = self._groups[g]
        if self._absent_sayable[g, t[g]]:
            return Fact(group.name, "is", t[g]), self._book.absent[g]
        return Fact(group.name, "not", r[g]), self._book.negated[g][r[g]]

    def _render(self, statements: list[_Phrases], picks: list[float]) -> str:
        """Join one phrase variant per statement, drawn among those that keep the caption within ``max_words``.

        A statement whose every variant is too long uses its shortest one, so
        a caption exceeds ``max_words`` only when its shortest wording does.
        """
        # Words still needed by the statements after each position, at their shortest.
        minimum = [p.min_cont for p in statements]
        if statements:
            minimum[0] = statements[0].min_lead
        remaining_min = sum(minimum)

        parts = []
        words = 0
        for position, phrases in enumerate(statements):
            remaining_min -= minimum[position]
            budget = self.config.max_words - words - remaining_min
            variants, lengths = (phrases.lead, phrases.lead_words) if position == 0 else (phrases.cont, phrases.cont_words)
            fitting = [k for k, n in enumerate(lengths) if n <= budget]
            if fitting:
                choice = fitting[int(picks[position] * len(fitting))]
            else:
                choice = lengths.index(min(lengths))
            parts.append(variants[choice])
            words += lengths[choice]
        return " ".join(parts)


__all__ = [
    "FORMS",
    "RELATIONS",
    "CaptionWithFacts",
    "Fact",
    "TemplateConfig",
    "TemplateSimulator",
    "verify_facts",
]
