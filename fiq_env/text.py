"""Caption normalization, tokenization and the word vocabulary.

Captions are lower-cased ASCII words. The environment encodes each caption as
a fixed number of token ids (8 in the Fashion IQ paper): longer captions are
truncated and shorter ones padded with :data:`PAD_ID`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fiq_env.errors import ConfigError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)

_WORD_PATTERN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")

# Characters that NFKD does not reduce to ASCII but that have a plain spelling.
# Typographic apostrophes and hyphens become ASCII ones, so "doesn\u2019t"
# stays one word; dashes used as punctuation become spaces.
_ASCII_SPELLINGS = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "\u2010": "-",
        "\u2011": "-",
        "\u2013": " ",
        "\u2014": " ",
        "\u00df": "ss",
        "\u00e6": "ae",
        "\u00c6": "ae",
        "\u0153": "oe",
        "\u0152": "oe",
        "\u00f8": "o",
        "\u00d8": "o",
        "\u0142": "l",
        "\u0141": "l",
        "\u0111": "d",
        "\u0110": "d",
    }
)


def normalize_caption(text: str) -> str:
    """Return ``text`` as lower-case ASCII words separated by single spaces.

    Accented letters lose their accents (``"beige clair\u00e9"`` becomes
    ``"beige claire"``) and a few letters without a decomposition get their
    usual spelling (``"\u00df"`` becomes ``"ss"``); other non-ASCII characters
    are dropped. Punctuation, including trailing full stops, is dropped, and
    apostrophes and hyphens inside words are kept (``"v-neck"``,
    ``"doesn't"``, also when typed as typographic quotes). An empty or
    whitespace-only caption returns ``""``. The result depends only on
    ``text``.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_SPELLINGS))
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(_WORD_PATTERN.findall(ascii_text))


def tokenize(text: str) -> list[str]:
    """Split a caption into normalized words."""
    normalized = normalize_caption(text)
    return normalized.split() if normalized else []


@dataclass
class Vocabulary:
    """Word list with the four special tokens at ids 0-3.

    Attributes:
        words: every token, special tokens first; a word's id is its position.
    """

    words: list[str] = field(default_factory=lambda: list(SPECIAL_TOKENS))

    def __post_init__(self) -> None:
        if tuple(self.words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ConfigError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {self.words[:4]}")
        if len(set(self.words)) != len(self.words):
            duplicates = [w for w, n in Counter(self.words).items() if n > 1]
            raise ConfigError(f"duplicate words in vocabulary: {duplicates[:10]}")
        self._index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, extra_words: Iterable[str] = ()) -> Vocabulary:
        """Build a vocabulary from captions, keeping words seen at least ``min_count`` times.

        Words are ordered by frequency, then alphabetically, so the same
        captions always give the same ids. ``extra_words`` are always kept.
        """
        counts = Counter(word for text in texts for word in tokenize(text))
        for word in extra_words:
            counts[word] = max(counts[word], min_count)
        kept = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIAL_TOKENS), key=lambda w: (-counts[w], w))
        return cls(list(SPECIAL_TOKENS) + kept)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def id_of(self, word: str) -> int:
        return self._index.get(word, UNK_ID)

    def encode(self, text: str, length: int, add_eos: bool = False) -> np.ndarray:
        """Return ``length`` token ids for ``text``, truncated or padded with :data:`PAD_ID`."""
        ids = [self.id_of(word) for word in tokenize(text)]
        if add_eos:
            ids.append(EOS_ID)
        ids = ids[:length]
        out = np.full(length, PAD_ID, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def encode_batch(self, texts: Sequence[str], length: int, add_eos: bool = False) -> np.ndarray:
        """Encode many captions into an array of shape ``(len(texts), length)``."""
        out = np.full((len(texts), length), PAD_ID, dtype=np.int64)
        for row, text in enumerate(texts):
            out[row] = self.encode(text, length, add_eos)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Turn token ids back into text, stopping at the first end-of-sentence token."""
        words = []
        for token in ids:
            token = int(token)
            if token == EOS_ID:
                break
            if token in (PAD_ID, BOS_ID):
                continue
            words.append(self.words[token] if 0 <= token < len(self.words) else UNK)
        return " ".join(words)

    def to_json(self) -> list[str]:
        return list(self.words)

    @classmethod
    def from_json(cls, words: list[str]) -> Vocabulary:
        return cls(list(words))
