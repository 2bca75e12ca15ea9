"""Caption quality: BLEU-4, ROUGE-L and CIDEr against references, and attribute accuracy.

The n-gram metrics use the scorers of ``pycocoevalcap`` (the COCO caption
evaluation code, pure Python). Its Java PTB tokenizer is skipped: captions go
through :func:`fiq_env.text.normalize_caption` instead, which lower-cases,
strips punctuation and separates words by single spaces. CIDEr here is
CIDEr-D as ``pycocoevalcap`` computes it, with document frequencies taken
from the evaluated references, so it is only comparable between runs on the
same pairs. Scores are reported on a 0-100 scale, as in the Fashion IQ paper.

Attribute accuracy is the share of attribute claims in generated captions
that are true of the target. :class:`AttributeLexicon` reads three kinds of
claim, in the wording of the ``template`` simulator:

- direct: a group value word ("red", "long sleeves", "is long sleeved"),
  true when the target has that value.
- comparative: the ``more`` or ``less`` word of an ordered group ("longer",
  "darker"), true when the target's level is higher or lower than the
  reference item's. Checking it needs the reference items.
- negated: a value word or comparative up to two words after "not", "no",
  "without" or "non", or a value word right after "less" ("is less casual").
  It is true when the positive claim is false and the target's value is known.

A comparative that two groups share ("longer" for dress length and for
sleeves) belongs to the group whose noun or name is among the next two words
("longer sleeves", "shorter in length"). When neither word names a group, it
belongs to the group without a noun ("is longer", "a shorter dress"). When
every group that shares it has a noun, the claim stays unresolved and is
counted as unchecked. A word of one group only always belongs to that group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fiq_env.catalog import UNKNOWN, Catalog
from fiq_env.errors import ConfigError
from fiq_env.text import normalize_caption, tokenize

# The template simulator's wording tables, so that the metric reads every
# value word variant the simulator writes ("has stripes", "is long sleeved").
from simulators.template import (
    _PART_ADJECTIVES,
    _PATTERN_ADJECTIVES,
    _PATTERN_NOUNS,
    _SYNONYMS,
    Fact,
    verify_facts,
)

NEGATIONS = frozenset({"not", "no", "without", "non"})
"""Words that negate an attribute phrase or comparative when they occur up to two words before it."""

LESS = "less"
"""Word that negates a value word right after it ("is less casual")."""

CLAIM_KINDS = ("direct", "comparative", "negated")
"""Kinds of attribute claim, in the order :class:`AttributeAccuracy` reports them."""

DEFAULT_ALIASES: Mapping[str, str] = {"grey": "gray"}
"""Spellings shoppers use for a catalog's value word (alias -> value)."""


def caption_scores(generated: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Return BLEU-4, ROUGE-L and CIDEr (0-100) of ``generated`` captions against their references.

    Args:
        generated: one caption per pair.
        references: one or more reference captions per pair.

    Raises:
        ConfigError: when the lengths differ, a pair has no reference or
            there are no pairs.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(generated) != len(references):
        raise ConfigError(f"got {len(generated)} generated captions but {len(references)} reference lists")
    if not generated:
        raise ConfigError("caption_scores needs at least one caption")
    hypotheses: dict[int, list[str]] = {}
    gold: dict[int, list[str]] = {}
    for index, (caption, refs) in enumerate(zip(generated, references)):
        if not refs:
            raise ConfigError(f"pair {index} has no reference caption")
        # An empty hypothesis makes the BLEU scorer fail, so it is scored as one unknown word.
        hypotheses[index] = [normalize_caption(caption) or "<empty>"]
        gold[index] = [normalize_caption(ref) for ref in refs]

    bleu, _ = Bleu(4).compute_score(gold, hypotheses, verbose=0)
    rouge, _ = Rouge().compute_score(gold, hypotheses)
    cider, _ = Cider().compute_score(gold, hypotheses)
    return {"bleu4": 100.0 * float(bleu[3]), "rouge_l": 100.0 * float(rouge), "cider": 100.0 * float(cider)}


@dataclass(frozen=True)
class ClaimCounts:
    """Counts of one kind of attribute claim.

    Attributes:
        correct: claims true of their target.
        checked: claims that could be checked (the values they need are known).
        unchecked: claims whose target value (or, for comparatives, reference
            value) is unknown, or comparatives that no group resolves.
    """

    correct: int = 0
    checked: int = 0
    unchecked: int = 0

    @property
    def accuracy(self) -> float:
        """Share of checked claims that are correct, in ``[0, 1]``; NaN when nothing was checked."""
        return self.correct / self.checked if self.checked else math.nan


@dataclass(frozen=True)
class AttributeAccuracy:
    """Attribute claims checked against the targets, per kind of claim.

    Attributes:
        direct: value words ("red", "long sleeves").
        comparative: comparatives of ordered groups ("longer", "darker").
        negated: negated value words or comparatives ("no belt", "not darker").
    """

    direct: ClaimCounts = ClaimCounts()
    comparative: ClaimCounts = ClaimCounts()
    negated: ClaimCounts = ClaimCounts()

    @property
    def correct(self) -> int:
        """Correct claims of all kinds."""
        return self.direct.correct + self.comparative.correct + self.negated.correct

    @property
    def checked(self) -> int:
        """Checked claims of all kinds."""
        return self.direct.checked + self.comparative.checked + self.negated.checked

    @property
    def unchecked(self) -> int:
        """Claims of all kinds that could not be checked."""
        return self.direct.unchecked + self.comparative.unchecked + self.negated.unchecked

    @property
    def accuracy(self) -> float:
        """Share of all checked claims that are correct, in ``[0, 1]``; NaN when nothing was checked."""
        return self.correct / self.checked if self.checked else math.nan

    def by_kind(self) -> dict[str, ClaimCounts]:
        """Return the counts keyed by the names in :data:`CLAIM_KINDS`."""
        return {kind: getattr(self, kind) for kind in CLAIM_KINDS}


class Claim(NamedTuple):
    """One attribute claim read from a caption.

    Attributes:
        kind: one of :data:`CLAIM_KINDS`.
        words: the caption words that make the claim.
        meanings: what the words state when not negated. Each is a
            ``(group, code)`` value, a ``(group, "more" | "less")`` comparison
            or, for catalogs without groups, ``(None, attribute column)``.
            Several meanings mean "either"; none means the claim is unresolved.
        negated: whether a negation word turns the claim around.
    """

    kind: str
    words: tuple[str, ...]
    meanings: tuple[tuple[str | None, int | str], ...]
    negated: bool


class AttributeLexicon:
    """Reads the attribute claims of captions about one catalog and checks them on item pairs.

    With attribute groups, a value phrase is a group value word or one of the
    template simulator's variants of it ("grey", "has stripes", "long
    sleeved"), and a word shared by two groups means "either". Comparatives
    come from the ordered groups. Without groups (data sets that only list
    attribute words per item), a phrase is an attribute name, true of the
    items labelled with it, and there are no comparatives. Items without
    labels are not checked.
    """

    def __init__(self, catalog: Catalog, aliases: Mapping[str, str] = DEFAULT_ALIASES) -> None:
        self.catalog = catalog
        # phrase (as a token tuple) -> list of (group name, value code) or (None, attribute column)
        self.meanings: dict[tuple[str, ...], list[tuple[str | None, int]]] = {}
        # comparative word -> list of (group name, "more" | "less")
        self.comparatives: dict[str, list[tuple[str, str]]] = {}
        # group name -> words that name what its comparative qualifies ("sleeves", "sleeve", "sleeved")
        self.group_nouns: dict[str, frozenset[str]] = {}
        if catalog.groups:
            self._add_groups()
        else:
            for column, name in enumerate(catalog.attribute_names):
                self._add(name.split(":")[-1], (None, column))
        for alias, value in aliases.items():
            meaning = self.meanings.get(tuple(tokenize(value)))
            if meaning is not None:
                self.meanings.setdefault(tuple(tokenize(alias)), list(meaning))
        self.max_phrase_words = max((len(p) for p in self.meanings), default=0)

    def _add_groups(self) -> None:
        for group in self.catalog.groups:
            for code, value in enumerate(group.values):
                if value == group.absent:
                    continue
                for variant in self._value_variants(value, group.noun):
                    self._add(variant, (group.name, code))
            if group.ordered:
                self.comparatives.setdefault(group.more, []).append((group.name, "more"))
                self.comparatives.setdefault(group.less, []).append((group.name, "less"))
                nouns = set(tokenize(group.noun))
                nouns |= {word.rstrip("s") for word in nouns}
                nouns |= {_PART_ADJECTIVES[word] for word in tokenize(group.noun) if word in _PART_ADJECTIVES}
                if group.name.isalpha():
                    nouns.add(group.name)
                self.group_nouns[group.name] = frozenset(nouns)

    @staticmethod
    def _value_variants(value: str, noun: str) -> list[str]:
        """Return ``value`` and the template simulator's other wordings of it."""
        variants = [value, *_SYNONYMS.get(value, ())]
        for table in (_PATTERN_ADJECTIVES, _PATTERN_NOUNS):
            if value in table:
                variants.append(table[value])
        part_adjective = _PART_ADJECTIVES.get(noun)
        if part_adjective and value.endswith(f" {noun}") and value.count(" ") == 1:
            variants.append(f"{value.split()[0]} {part_adjective}")
        return variants

    def _add(self, phrase: str, meaning: tuple[str | None, int]) -> None:
        words = tuple(tokenize(phrase))
        if words and meaning not in self.meanings.get(words, []):
            self.meanings.setdefault(words, []).append(meaning)

    def mentions(self, caption: str) -> list[tuple[tuple[str, ...], bool]]:
        """Return ``(phrase, negated)`` for each value phrase in ``caption``, longest match first."""
        return [(claim.words, claim.negated) for claim in self.claims(caption, comparatives=False)]

    def claims(self, caption: str, comparatives: bool = True) -> list[Claim]:
        """Read the attribute claims of ``caption`` in order, matching the longest value phrase first.

        With ``comparatives=False`` comparative words are skipped.

        NOTE: a negated part noun without a value word ("without straps",
        "no sleeves") is not read as a claim, because no group value means it.
        """
        words = tokenize(caption)
        found = []
        position = 0
        while position < len(words):
            negated = any(w in NEGATIONS for w in words[max(0, position - 2) : position])
            claim = self._value_claim(words, position, negated)
            if claim is None and comparatives and words[position] in self.comparatives:
                meanings = self._resolve_comparative(words, position)
                claim = Claim("negated" if negated else "comparative", (words[position],), meanings, negated)
            if claim is None:
                position += 1
                continue
            found.append(claim)
            position += len(claim.words)
        return found

    def _value_claim(self, words: list[str], position: int, negated: bool) -> Claim | None:
        for size in range(min(self.max_phrase_words, len(words) - position), 0, -1):
            phrase = tuple(words[position : position + size])
            if phrase in self.meanings:
                negated = negated or (position > 0 and words[position - 1] == LESS)
                return Claim("negated" if negated else "direct", phrase, tuple(self.meanings[phrase]), negated)
        return None

    def _resolve_comparative(self, words: list[str], position: int) -> tuple[tuple[str, str], ...]:
        """Choose the group of the comparative at ``position`` by the rule in the module docstring."""
        candidates = self.comparatives[words[position]]
        if len(candidates) == 1:
            return tuple(candidates)
        for word in words[position + 1 : position + 3]:
            named = [c for c in candidates if word in self.group_nouns[c[0]]]
            if named:
                return tuple(named)
        return tuple(c for c in candidates if not self.catalog.group(c[0]).noun)

    def check(self, claim: Claim, target: int, reference: int | None = None) -> bool | None:
        """Return whether ``claim`` is true of ``target`` (compared with ``reference``), or None when unknown.

        Comparatives need ``reference``; without it they are unknown.
        """
        known = False
        holds = False
        for group, value in claim.meanings:
            if group is None:
                if not self.catalog.label_mask[target]:
                    continue
                known = True
                holds = holds or bool(self.catalog.labels[target, value])
                continue
            if isinstance(value, str):
                if reference is None:
                    continue
                fact = Fact(group, value, None)
                values = (int(self.catalog.group_values[group][target]), int(self.catalog.group_values[group][reference]))
            else:
                fact = Fact(group, "is", value)
                values = (int(self.catalog.group_values[group][target]),)
            if UNKNOWN in values:
                continue
            known = True
            # verify_facts returns no message when the fact holds for the pair.
            holds = holds or not verify_facts(self.catalog, target if reference is None else reference, target, [fact])
        if not known:
            return None
        return holds != claim.negated

    def holds(self, phrase: tuple[str, ...], item: int) -> bool | None:
        """Return whether the value phrase ``phrase`` is true of ``item``, or None when the item's value is unknown."""
        return self.check(Claim("direct", phrase, tuple(self.meanings[phrase]), False), item)


def attribute_accuracy(
    catalog: Catalog,
    captions: Sequence[str],
    target: Sequence[int] | np.ndarray,
    aliases: Mapping[str, str] = DEFAULT_ALIASES,
    reference: Sequence[int] | np.ndarray | None = None,
) -> AttributeAccuracy:
    """Check the attribute claims of each ``captions[i]`` against item ``target[i]``.

    Args:
        catalog: the catalog the items belong to.
        captions: one generated caption per pair.
        target: the target item of each pair.
        aliases: extra spellings of value words (alias -> value).
        reference: the reference item of each pair. Without it comparatives
            are skipped (not counted at all), and only direct and negated
            value claims are checked.

    Raises:
        ConfigError: when ``target`` or ``reference`` has another length than ``captions``.
    """
    target = np.asarray(target, dtype=np.int64).reshape(-1)
    if len(captions) != len(target):
        raise ConfigError(f"got {len(captions)} captions but {len(target)} targets")
    if reference is not None:
        reference = np.asarray(reference, dtype=np.int64).reshape(-1)
        if len(reference) != len(target):
            raise ConfigError(f"got {len(captions)} captions but {len(reference)} references")
    lexicon = AttributeLexicon(catalog, aliases)

    counts = {kind: [0, 0, 0] for kind in CLAIM_KINDS}  # correct, checked, unchecked
    for index, caption in enumerate(captions):
        item = int(target[index])
        other = None if reference is None else int(reference[index])
        for claim in lexicon.claims(caption, comparatives=reference is not None):
            truth = lexicon.check(claim, item, other)
            count = counts[claim.kind]
            if truth is None:
                count[2] += 1
                continue
            count[1] += 1
            count[0] += int(truth)
    return AttributeAccuracy(**{kind: ClaimCounts(*values) for kind, values in counts.items()})
