"""Greedy decoding and beam search against hand-built step functions with known log-probabilities."""

from __future__ import annotations

import itertools
import math
import zlib

import pytest
import torch

from fiq_env.errors import ConfigError
from fiq_env.text import EOS_ID, PAD_ID
from simulators.decoding import (
    DEFAULT_BANNED_IDS,
    DecodingConfig,
    beam_search,
    decode,
    greedy_decode,
    normalized_score,
    sample_decode,
    token_lengths,
)

WORDS = (4, 5, 6)  # ids of the three ordinary words; 0-3 are the special tokens
VOCAB_SIZE = 7


class TableModel:
    """A fake captioner: each (pair, prefix) gets fixed pseudo-random log-probabilities."""

    def __init__(self, seed: int = 0, eos_bias: float = 0.0) -> None:
        self.seed = seed
        self.eos_bias = eos_bias
        self.calls = 0

    def log_probs(self, pair: int, prefix: tuple[int, ...]) -> torch.Tensor:
        key = f"{self.seed}:{pair}:{prefix}".encode()
        generator = torch.Generator().manual_seed(zlib.crc32(key))
        logits = torch.randn(VOCAB_SIZE, generator=generator) * 2.0
        logits[EOS_ID] += self.eos_bias
        return torch.log_softmax(logits, dim=0)

    def __call__(self, tokens: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        rows = [self.log_probs(int(b), tuple(int(t) for t in row[1:])) for row, b in zip(tokens, batch_index)]
        return torch.stack(rows)


def exhaustive_best(model: TableModel, pair: int, max_length: int, alpha: float, min_length: int = 0):
    """Score every allowed sequence and return (tokens, normalized score) of the best one."""
    allowed = [t for t in range(VOCAB_SIZE) if t not in DEFAULT_BANNED_IDS and t != EOS_ID]
    best_tokens, best_score = None, -math.inf
    for num_words in range(max_length + 1):
        for words in itertools.product(allowed, repeat=num_words):
            finished = num_words < max_length
            if finished and num_words < min_length:
                continue
            sequence = list(words) + ([EOS_ID] if finished else [])
            total = sum(float(model.log_probs(pair, tuple(sequence[:i]))[tok]) for i, tok in enumerate(sequence))
            score = normalized_score(total, len(sequence), alpha)
            if score > best_score:
                best_tokens, best_score = sequence, score
    return best_tokens, best_score


def strip(row: torch.Tensor) -> list[int]:
    return [int(t) for t in row if int(t) != PAD_ID]


@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
def test_beam_exhaustive_width_finds_best(alpha: float) -> None:
    model = TableModel(seed=1)
    max_length = 3
    num_sequences = sum(3**n for n in range(max_length + 1))

    output = beam_search(model, 2, max_length, num_sequences, length_penalty=alpha, min_length=0)

    for pair in range(2):
        expected_tokens, expected_score = exhaustive_best(model, pair, max_length, alpha)
        assert strip(output.tokens[pair, 0]) == expected_tokens
        assert float(output.scores[pair, 0]) == pytest.approx(expected_score, abs=1e-5)


def test_beam_respects_min_length() -> None:
    model = TableModel(seed=2, eos_bias=4.0)

    output = beam_search(model, 1, 3, 40, length_penalty=0.0, min_length=2)
    expected_tokens, _ = exhaustive_best(model, 0, 3, 0.0, min_length=2)

    assert strip(output.tokens[0, 0]) == expected_tokens


def test_beam_without_eos_returns_unfinished() -> None:
    model = TableModel(seed=3, eos_bias=-math.inf)

    output = beam_search(model, 2, 4, 5, num_return=5)

    assert torch.isfinite(output.scores).all()
    assert (output.tokens != PAD_ID).all()
    assert not (output.tokens == EOS_ID).any()
    assert output.tokens.shape == (2, 5, 4)


def test_beam_width_above_vocab() -> None:
    model = TableModel(seed=4)

    output = beam_search(model, 1, 1, 20, min_length=0, num_return=20)

    finite = torch.isfinite(output.scores[0])
    hypotheses = [tuple(strip(row)) for row in output.tokens[0][finite]]
    assert len(hypotheses) == 4  # three one-word captions without EOS, plus the empty caption
    assert len(set(hypotheses)) == len(hypotheses)
    assert (output.tokens[0][~finite] == PAD_ID).all()


def test_beam_width_above_vocab_longer() -> None:
    model = TableModel(seed=5)

    output = beam_search(model, 3, 3, 64, min_length=1, num_return=64)

    finite = torch.isfinite(output.scores)
    for pair in range(3):
        hypotheses = [tuple(strip(row)) for row in output.tokens[pair][finite[pair]]]
        assert len(set(hypotheses)) == len(hypotheses)
    sorted_scores, _ = output.scores.sort(dim=1, descending=True)
    assert torch.equal(sorted_scores, output.scores)


def test_beam_scores_ignore_padding() -> None:
    model = TableModel(seed=6, eos_bias=3.0)

    short = beam_search(model, 1, 3, 5, length_penalty=1.0)
    long = beam_search(model, 1, 7, 5, length_penalty=1.0)

    tokens = strip(short.tokens[0, 0])
    total = sum(float(model.log_probs(0, tuple(tokens[:i]))[tok]) for i, tok in enumerate(tokens))
    assert tokens[-1] == EOS_ID
    assert float(short.scores[0, 0]) == pytest.approx(total / len(tokens), abs=1e-5)
    assert strip(long.tokens[0, 0]) == tokens


def test_beam_batch_matches_single() -> None:
    model = TableModel(seed=7)

    batched = beam_search(model, 3, 4, 3)
    single = beam_search(lambda tokens, index: model(tokens, index + 2), 1, 4, 3)

    assert torch.equal(batched.tokens[2], single.tokens[0])


def repeat_loving_model(tokens: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """Strongly prefers word 4, then word 5, and almost never ends."""
    logits = torch.full((tokens.shape[0], VOCAB_SIZE), -5.0)
    logits[:, 4] = 3.0
    logits[:, 5] = 1.0
    logits[:, 6] = 0.0
    logits[:, EOS_ID] = -8.0
    return torch.log_softmax(logits, dim=1)


def repeated_ngrams(sequence: list[int], size: int) -> int:
    grams = [tuple(sequence[i : i + size]) for i in range(len(sequence) - size + 1)]
    return len(grams) - len(set(grams))


def test_greedy_repeats_without_blocking() -> None:
    tokens = greedy_decode(repeat_loving_model, 1, 5)

    assert strip(tokens[0]) == [4, 4, 4, 4, 4]


@pytest.mark.parametrize("size", [1, 2])
def test_ngram_blocking_greedy(size: int) -> None:
    tokens = greedy_decode(repeat_loving_model, 2, 6, no_repeat_ngram_size=size)

    for row in tokens:
        words = [t for t in strip(row) if t != EOS_ID]
        assert repeated_ngrams(words, size) == 0


@pytest.mark.parametrize("size", [1, 2])
def test_ngram_blocking_beam(size: int) -> None:
    output = beam_search(repeat_loving_model, 2, 6, 4, no_repeat_ngram_size=size, num_return=4)

    for pair in range(2):
        for row, score in zip(output.tokens[pair], output.scores[pair]):
            if torch.isfinite(score):
                words = [t for t in strip(row) if t != EOS_ID]
                assert repeated_ngrams(words, size) == 0


def test_greedy_follows_argmax() -> None:
    model = TableModel(seed=8)

    tokens = greedy_decode(model, 2, 4, min_length=0)

    for pair in range(2):
        prefix: list[int] = []
        for _ in range(4):
            log_probs = model.log_probs(pair, tuple(prefix)).clone()
            log_probs[list(DEFAULT_BANNED_IDS)] = -math.inf
            prefix.append(int(log_probs.argmax()))
            if prefix[-1] == EOS_ID:
                break
        assert strip(tokens[pair]) == prefix


def test_greedy_output_shape() -> None:
    tokens = greedy_decode(TableModel(seed=9), 5, 8)

    assert tokens.shape == (5, 8)


def test_sample_same_seed_same_output() -> None:
    model = TableModel(seed=10)

    first = sample_decode(model, 4, 5, torch.Generator().manual_seed(3))
    second = sample_decode(model, 4, 5, torch.Generator().manual_seed(3))

    assert torch.equal(first, second)


def test_decode_sample_needs_generator() -> None:
    with pytest.raises(ConfigError, match="generator"):
        decode(TableModel(), 1, 3, DecodingConfig(strategy="sample"))


def test_token_lengths_count_eos_not_padding() -> None:
    tokens = torch.tensor([[4, 5, EOS_ID, PAD_ID], [4, 4, 4, 4], [EOS_ID, PAD_ID, PAD_ID, PAD_ID]])

    assert token_lengths(tokens).tolist() == [3, 4, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "nucleus"}, "strategy"),
        ({"beam_width": 0}, "beam_width"),
        ({"length_penalty": -1.0}, "length_penalty"),
        ({"no_repeat_ngram_size": -2}, "no_repeat_ngram_size"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_decoding_config_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DecodingConfig(**kwargs)
