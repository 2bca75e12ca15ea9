"""Caption decoding shared by every learned captioner: greedy, beam search and sampling.

A model exposes one step function: given the tokens generated so far it
returns log-probabilities of the next token. The decoders here know nothing
else about the model, so the transformer and the RNN captioner share them.

Token conventions follow :mod:`fiq_env.text`: every row starts with
``BOS_ID``; a caption ends with ``EOS_ID``; positions after the end are
``PAD_ID``. Decoded outputs drop the leading BOS and have exactly
``max_length`` columns. ``max_length`` counts generated tokens, the
end-of-sentence token included, so a caption of ``max_length`` words has no
room for EOS and comes back unfinished.

Greedy and beam search are deterministic. Only :func:`sample_decode` uses
randomness, and only from the ``torch.Generator`` it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fiq_env.errors import ConfigError
from fiq_env.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID

StepFunction = Callable[[Tensor, Tensor], Tensor]
"""``step(tokens, batch_index) -> log_probs``.

``tokens`` is ``(rows, t)`` token ids starting with BOS; ``batch_index`` is
``(rows,)``, the input pair of each row (beam search runs
several rows per pair). The result is ``(rows, vocab_size)`` log-probabilities
of the next token.
"""

DEFAULT_BANNED_IDS = (PAD_ID, BOS_ID, UNK_ID)
"""Tokens a decoder never emits: padding, a second BOS and the unknown-word token."""

STRATEGIES = ("greedy", "beam", "sample")


@dataclass
class DecodingConfig:
    """How a captioner turns next-token distributions into captions.

    Attributes:
        strategy: ``"greedy"`` (fast, used while agents train), ``"beam"``
            (used for evaluation, width 5 in the Fashion IQ paper) or
            ``"sample"`` (draws from the model's distribution; the only
            strategy that uses the caller's random generator).
        beam_width: hypotheses kept per pair by beam search.
        length_penalty: exponent ``alpha`` of the length normalization
            ``score / length ** alpha``; 0 ranks by total log-probability
            (favours short captions), 1 by mean log-probability per token.
        no_repeat_ngram_size: forbid repeating any n-gram of this size within
            a caption; 0 turns blocking off.
        min_length: generated tokens required before EOS may be emitted
            (1 forbids empty captions).
        temperature: softmax temperature of the ``sample`` strategy.
    """

    strategy: str = "greedy"
    beam_width: int = 5
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    min_length: int = 1
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown decoding strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if self.beam_width < 1:
            raise ConfigError(f"beam_width must be at least 1, got {self.beam_width}")
        if self.length_penalty < 0:
            raise ConfigError(f"length_penalty must be >= 0, got {self.length_penalty}")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(f"no_repeat_ngram_size must be >= 0 (0 disables it), got {self.no_repeat_ngram_size}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")

    @classmethod
    def from_name(cls, name: str | DecodingConfig) -> DecodingConfig:
        """Return the default configuration of strategy ``name`` (a config passes through)."""
        if isinstance(name, DecodingConfig):
            return name
        return cls(strategy=name)


@dataclass
class BeamSearchOutput:
    """The best hypotheses of a batched beam search.

    Attributes:
        tokens: ``(batch, num_return, max_length)`` token ids without BOS,
            padded with ``PAD_ID`` after EOS (and everywhere for a missing
            hypothesis).
        scores: ``(batch, num_return)`` length-normalized log-probabilities,
            best first; ``-inf`` marks a missing hypothesis (fewer possible
            sequences than ``num_return``).
    """

    tokens: Tensor
    scores: Tensor


def normalized_score(log_prob: float | Tensor, length: int, length_penalty: float) -> float | Tensor:
    """Return ``log_prob / length ** length_penalty``.

    ``length`` counts generated tokens, EOS included, never BOS or padding.
    """
    return log_prob / (float(length) ** length_penalty)


def decode(
    step: StepFunction,
    batch_size: int,
    max_length: int,
    config: DecodingConfig,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Decode ``batch_size`` captions with ``config.strategy``; returns ``(batch, max_length)`` ids.

    ``generator`` is required by the ``sample`` strategy and ignored by the others.
    """
    if config.strategy == "greedy":
        return greedy_decode(
            step, batch_size, max_length,
            min_length=config.min_length, no_repeat_ngram_size=config.no_repeat_ngram_size, device=device,
        )
    if config.strategy == "beam":
        output = beam_search(
            step, batch_size, max_length, config.beam_width,
            length_penalty=config.length_penalty, min_length=config.min_length,
            no_repeat_ngram_size=config.no_repeat_ngram_size, device=device,
        )
        return output.tokens[:, 0]
    if generator is None:
        raise ConfigError("the 'sample' decoding strategy needs a torch.Generator; pass generator=...")
    return sample_decode(
        step, batch_size, max_length, generator,
        temperature=config.temperature, min_length=config.min_length,
        no_repeat_ngram_size=config.no_repeat_ngram_size, device=device,
    )


def greedy_decode(
    step: StepFunction,
    batch_size: int,
    max_length: int,
    *,
    min_length: int = 1,
    no_repeat_ngram_size: int = 0,
    banned_ids: Sequence[int] = DEFAULT_BANNED_IDS,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Pick the most likely next token at every step; returns ``(batch, max_length)`` ids."""
    return _decode_one_path(
        step, batch_size, max_length, choose=lambda log_probs: log_probs.argmax(dim=-1),
        min_length=min_length, no_repeat_ngram_size=no_repeat_ngram_size, banned_ids=banned_ids, device=device,
    )


def sample_decode(
    step: StepFunction,
    batch_size: int,
    max_length: int,
    generator: torch.Generator,
    *,
    temperature: float = 1.0,
    min_length: int = 1,
    no_repeat_ngram_size: int = 0,
    banned_ids: Sequence[int] = DEFAULT_BANNED_IDS,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Draw each next token from the model's distribution at ``temperature``; returns ``(batch, max_length)``."""

    def choose(log_probs: Tensor) -> Tensor:
        probs = torch.softmax(log_probs / temperature, dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(log_probs.device)

    return _decode_one_path(
        step, batch_size, max_length, choose=choose,
        min_length=min_length, no_repeat_ngram_size=no_repeat_ngram_size, banned_ids=banned_ids, device=device,
    )


def _decode_one_path(
    step: StepFunction,
    batch_size: int,
    max_length: int,
    *,
    choose: Callable[[Tensor], Tensor],
    min_length: int,
    no_repeat_ngram_size: int,
    banned_ids: Sequence[int],
    device: torch.device | str,
) -> Tensor:
    _check_lengths(max_length, min_length)
    tokens = torch.full((batch_size, 1), BOS_ID, dtype=torch.long, device=device)
    batch_index = torch.arange(batch_size, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)

    for position in range(max_length):
        log_probs = step(tokens, batch_index).float()
        log_probs = constrain_log_probs(log_probs, tokens, position, min_length, no_repeat_ngram_size, banned_ids)
        # A row whose every token is banned ends its caption instead of failing.
        dead_end = ~torch.isfinite(log_probs).any(dim=-1)
        log_probs[dead_end, EOS_ID] = 0.0
        next_token = choose(log_probs)
        next_token = torch.where(finished, torch.full_like(next_token, PAD_ID), next_token)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= next_token == EOS_ID
        if bool(finished.all()):
            break

    return _pad_to(tokens[:, 1:], max_length)


def beam_search(
    step: StepFunction,
    batch_size: int,
    max_length: int,
    beam_width: int = 5,
    *,
    length_penalty: float = 1.0,
    min_length: int = 1,
    no_repeat_ngram_size: int = 0,
    num_return: int = 1,
    banned_ids: Sequence[int] = DEFAULT_BANNED_IDS,
    device: torch.device | str = "cpu",
) -> BeamSearchOutput:
    """Search for the captions with the best length-normalized log-probability, batched over pairs.

    Each pair keeps ``beam_width`` unfinished hypotheses and a pool of the
    ``beam_width`` best finished ones. Hypotheses are ranked by
    :func:`normalized_score`: the total log-probability divided by
    ``length ** length_penalty``, where ``length`` counts generated tokens with
    EOS and never BOS or padding. Hypotheses still unfinished after
    ``max_length`` tokens join the pool with ``length = max_length``, so a
    model that never emits EOS still gets its best captions back.

    When ``beam_width`` is at least the number of possible sequences the
    search is exhaustive and returns the best sequence exactly. A width larger
    than the vocabulary is allowed: slots with no real hypothesis carry a
    ``-inf`` score and are never returned as captions.

    Args:
        step: the model's :data:`StepFunction`.
        batch_size: number of input pairs.
        max_length: generated tokens per caption, EOS included.
        beam_width: unfinished hypotheses kept per pair.
        length_penalty: ``alpha`` of the normalization above.
        min_length: tokens before EOS is allowed.
        no_repeat_ngram_size: n-gram size that may not repeat (0: off).
        num_return: hypotheses returned per pair, best first (at most ``beam_width``).
        banned_ids: tokens never emitted.
        device: where the token tensors live.
    """
    _check_lengths(max_length, min_length)
    if beam_width < 1:
        raise ConfigError(f"beam_width must be at least 1, got {beam_width}")
    if not 1 <= num_return <= beam_width:
        raise ConfigError(f"num_return must be between 1 and beam_width ({beam_width}), got {num_return}")

    width = beam_width
    rows = batch_size * width
    batch_index = torch.arange(batch_size, device=device).repeat_interleave(width)
    # Row b * width + k is beam k of pair b. Only beam 0 starts alive, so the
    # first step does not expand the same prefix `width` times.
    alive = torch.full((rows, 1), BOS_ID, dtype=torch.long, device=device)
    alive_scores = torch.full((batch_size, width), -math.inf, device=device)
    alive_scores[:, 0] = 0.0
    pool_tokens = torch.full((batch_size, width, max_length), PAD_ID, dtype=torch.long, device=device)
    pool_scores = torch.full((batch_size, width), -math.inf, device=device)

    for position in range(max_length):
        log_probs = step(alive, batch_index).float()
        log_probs = constrain_log_probs(log_probs, alive, position, min_length, no_repeat_ngram_size, banned_ids)
        vocab_size = log_probs.shape[-1]

        # (batch, width * vocab): the score of every one-token extension.
        candidates = (alive_scores.reshape(rows, 1) + log_probs).reshape(batch_size, width * vocab_size)
        # Each beam has one EOS extension, so 2 * width candidates always hold
        # `width` that continue, unless fewer exist.
        num_top = min(2 * width, width * vocab_size)
        top_scores, top_flat = candidates.topk(num_top, dim=1)
        source_beam = torch.div(top_flat, vocab_size, rounding_mode="floor")
        next_token = top_flat % vocab_size
        source_rows = (torch.arange(batch_size, device=device)[:, None] * width + source_beam).reshape(-1)
        extended = torch.cat([alive[source_rows], next_token.reshape(-1, 1)], dim=1)
        extended = extended.reshape(batch_size, num_top, position + 2)

        # Finished candidates join the pool, ranked by normalized score.
        is_eos = next_token == EOS_ID
        finished_scores = torch.where(
            is_eos & torch.isfinite(top_scores),
            normalized_score(top_scores, position + 1, length_penalty),
            torch.full_like(top_scores, -math.inf),
        )
        pool_tokens, pool_scores = _merge_into_pool(
            pool_tokens, pool_scores, _pad_to(extended[:, :, 1:], max_length), finished_scores
        )

        # The best `width` candidates that do not end the caption stay alive.
        continuing_scores = torch.where(is_eos, torch.full_like(top_scores, -math.inf), top_scores)
        alive_scores, keep = continuing_scores.topk(width, dim=1)
        alive = extended.gather(1, keep[:, :, None].expand(-1, -1, position + 2)).reshape(rows, position + 2)

        if not bool(torch.isfinite(alive_scores).any()):
            break
    else:
        # Hypotheses that reached max_length without EOS still compete.
        unfinished_scores = normalized_score(alive_scores, max_length, length_penalty)
        pool_tokens, pool_scores = _merge_into_pool(
            pool_tokens, pool_scores, alive[:, 1:].reshape(batch_size, width, max_length), unfinished_scores
        )

    tokens = pool_tokens[:, :num_return].clone()
    scores = pool_scores[:, :num_return].clone()
    tokens[~torch.isfinite(scores)] = PAD_ID
    return BeamSearchOutput(tokens=tokens, scores=scores)


def _merge_into_pool(
    pool_tokens: Tensor, pool_scores: Tensor, new_tokens: Tensor, new_scores: Tensor
) -> tuple[Tensor, Tensor]:
    """Keep the best ``width`` of the pool and the new hypotheses, best first."""
    width = pool_scores.shape[1]
    all_scores = torch.cat([pool_scores, new_scores], dim=1)
    all_tokens = torch.cat([pool_tokens, new_tokens], dim=1)
    best_scores, best = all_scores.topk(width, dim=1)
    best_tokens = all_tokens.gather(1, best[:, :, None].expand(-1, -1, all_tokens.shape[2]))
    return best_tokens, best_scores


def constrain_log_probs(
    log_probs: Tensor,
    tokens: Tensor,
    position: int,
    min_length: int,
    no_repeat_ngram_size: int,
    banned_ids: Sequence[int],
) -> Tensor:
    """Set to ``-inf`` the tokens a caption may not take at ``position``.

    Args:
        log_probs: ``(rows, vocab)`` next-token log-probabilities.
        tokens: ``(rows, position + 1)`` prefixes, BOS first.
        position: index of the token being generated (0 for the first word).
        min_length: EOS is banned while ``position < min_length``.
        no_repeat_ngram_size: bans a token that would repeat an n-gram of the prefix.
        banned_ids: tokens banned everywhere.
    """
    log_probs = log_probs.clone()
    if banned_ids:
        log_probs[:, list(banned_ids)] = -math.inf
    if position < min_length:
        log_probs[:, EOS_ID] = -math.inf
    if no_repeat_ngram_size > 0:
        for row, token in _repeated_ngram_bans(tokens[:, 1:], no_repeat_ngram_size):
            log_probs[row, token] = -math.inf
    return log_probs


def _repeated_ngram_bans(generated: Tensor, size: int) -> list[tuple[int, int]]:
    """Return ``(row, token)`` pairs whose token would complete an n-gram already in the row."""
    history = generated.cpu().numpy()
    length = history.shape[1]
    if length == 0:
        return []
    bans = []
    for row, sequence in enumerate(history):
        # The last size-1 tokens; an n-gram of size 1 bans every token seen so far.
        suffix = tuple(sequence[length - size + 1 :]) if size > 1 else ()
        for start in range(length - size + 1):
            if tuple(sequence[start : start + size - 1]) == suffix:
                bans.append((row, int(sequence[start + size - 1])))
    return bans


def _pad_to(tokens: Tensor, length: int) -> Tensor:
    """Right-pad the last dimension of ``tokens`` with ``PAD_ID`` to ``length``."""
    missing = length - tokens.shape[-1]
    if missing <= 0:
        return tokens
    padding = torch.full((*tokens.shape[:-1], missing), PAD_ID, dtype=tokens.dtype, device=tokens.device)
    return torch.cat([tokens, padding], dim=-1)


def _check_lengths(max_length: int, min_length: int) -> None:
    if max_length < 1:
        raise ConfigError(f"max_length must be at least 1, got {max_length}")
    if min_length < 0 or min_length > max_length:
        raise ConfigError(f"min_length must be between 0 and max_length ({max_length}), got {min_length}")


def token_lengths(tokens: Tensor | np.ndarray) -> np.ndarray:
    """Return the number of generated tokens of each row, EOS included, padding excluded."""
    array = np.asarray(tokens.cpu() if isinstance(tokens, Tensor) else tokens)
    lengths = np.empty(array.shape[0], dtype=np.int64)
    for row, sequence in enumerate(array):
        eos = np.flatnonzero(sequence == EOS_ID)
        lengths[row] = eos[0] + 1 if eos.size else int((sequence != PAD_ID).sum())
    return lengths
