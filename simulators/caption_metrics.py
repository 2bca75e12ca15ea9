"""Caption quality: BLEU-4, ROUGE-L and CIDEr against references, and attribute accuracy.

The n-gram metrics use the scorers of ``pycocoevalcap`` (the COCO caption
evaluation code, pure Python). Its Java PTB tokenizer is skipped: captions go
through :func:`fiq_env.text.normalize_caption` instead, which lower-cases,
strips punctuation and separates words by single spaces. CIDEr here is
CIDEr-D as ``pycocoevalcap`` computes it, with document frequencies taken
from the evaluated references, so it is only comparable between runs on the
same pairs. Scores are reported on a 0-100 scale, as in the Fashion IQ paper.

Attribute accuracy checks what a caption claims about the target: every
attribute phrase it mentions (a group value such as "long sleeves" or
"floral") must be true of the target, and a phrase right after a negation
("not", "no", "without") must be false of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fiq_env.catalog import UNKNOWN, Catalog
from fiq_env.errors import ConfigError
from fiq_env.text import normalize_caption, tokenize

NEGATIONS = frozenset({"not", "no", "without", "non"})
"""Words that negate an attribute phrase when they occur up to two words before it."""

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
class AttributeAccuracy:
    """Attribute claims checked against the targets.

    Attributes:
        correct: claims true of their target.
        checked: claims that could be checked (the target's value is known).
        unchecked: mentioned attributes whose target value is unknown.
    """

    correct: int
    checked: int
    unchecked: int

    @property
    def accuracy(self) -> float:
        """Share of checked claims that are correct, in ``[0, 1]``; NaN when nothing was checked."""
        return self.correct / self.checked if self.checked else math.nan


class AttributeLexicon:
    """Maps attribute phrases of one catalog to what they mean, and checks them on items.

    With attribute groups, a phrase is a group value word ("short sleeves"); a
    word shared by two groups means "either". Without groups (data sets that
    only list attribute words per item), a phrase is an attribute name, true
    of the items labelled with it. Items without labels are not checked.
    """

    def __init__(self, catalog: Catalog, aliases: Mapping[str, str] = DEFAULT_ALIASES) -> None:
        self.catalog = catalog
        # phrase (as a token tuple) -> list of (group name, value code) or (None, attribute column)
        self.meanings: dict[tuple[str, ...], list[tuple[str | None, int]]] = {}
        if catalog.groups:
            for group in catalog.groups:
                for code, value in enumerate(group.values):
                    if value != group.absent:
                        self._add(value, (group.name, code))
        else:
            for column, name in enumerate(catalog.attribute_names):
                self._add(name.split(":")[-1], (None, column))
        for alias, value in aliases.items():
            meaning = self.meanings.get(tuple(tokenize(value)))
            if meaning is not None:
                self.meanings.setdefault(tuple(tokenize(alias)), list(meaning))
        self.max_phrase_words = max((len(p) for p in self.meanings), default=0)

    def _add(self, phrase: str, meaning: tuple[str | None, int]) -> None:
        words = tuple(tokenize(phrase))
        if words:
            self.meanings.setdefault(words, []).append(meaning)

    def mentions(self, caption: str) -> list[tuple[tuple[str, ...], bool]]:
        """Return ``(phrase, negated)`` for each attribute phrase in ``caption``, longest match first."""
        words = tokenize(caption)
        found = []
        position = 0
        while position < len(words):
            for size in range(min(self.max_phrase_words, len(words) - position), 0, -1):
                phrase = tuple(words[position : position + size])
                if phrase in self.meanings:
                    negated = any(w in NEGATIONS for w in words[max(0, position - 2) : position])
                    found.append((phrase, negated))
                    position += size
                    break
            else:
                position += 1
        return found

    def holds(self, phrase: tuple[str, ...], item: int) -> bool | None:
        """Return whether ``phrase`` is true of ``item``, or None when the item's value is unknown."""
        known = False
        for group, code in self.meanings[phrase]:
            if group is None:
                if not self.catalog.label_mask[item]:
                    continue
                known = True
                if self.catalog.labels[item, code]:
                    return True
            else:
                value = int(self.catalog.group_values[group][item])
                if value == UNKNOWN:
                    continue
                known = True
                if value == code:
                    return True
        return False if known else None


def attribute_accuracy(
    catalog: Catalog,
    captions: Sequence[str],
    target: Sequence[int] | np.ndarray,
    aliases: Mapping[str, str] = DEFAULT_ALIASES,
) -> AttributeAccuracy:
    """Count how many attribute claims of ``captions[i]`` are true of item ``target[i]``.

    NOTE: only value words are checked. Comparatives ("longer", "darker")
    depend on the reference item too and are not counted.
    """
    target = np.asarray(target, dtype=np.int64).reshape(-1)
    if len(captions) != len(target):
        raise ConfigError(f"got {len(captions)} captions but {len(target)} targets")
    lexicon = AttributeLexicon(catalog, aliases)

    correct = checked = unchecked = 0
    for caption, item in zip(captions, target):
        for phrase, negated in lexicon.mentions(caption):
            truth = lexicon.holds(phrase, int(item))
            if truth is None:
                unchecked += 1
                continue
            checked += 1
            correct += int(truth != negated)
    return AttributeAccuracy(correct=correct, checked=checked, unchecked=unchecked)
