"""Wrappers of :class:`~fiq_env.env.FashionDialogEnv`.

:class:`TextObservation` replaces the arrays of the observation with the
dialog written out as text, for language-model agents. In ``"topk"`` mode
the text also lists the candidates with their ids and product titles, so an
agent can reply with a candidate index, the ``Discrete`` action of that mode.

:class:`FlatDialogObservation` reshapes the ``(turns, ...)`` arrays to 1-D
vectors. stable-baselines3's ``MultiInputPolicy`` trains on the unwrapped
observation as it is, but its ``check_env`` (version 2.x) warns about every
``Box`` that is neither 1-D nor an image; the flat layout passes it without
warnings.
"""

from __future__ import annotations

import string
import unicodedata
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from fiq_env.env import FashionDialogEnv
from fiq_env.errors import ConfigError

# Printable ASCII without the vertical tab and form feed; captions are transliterated to it.
TEXT_CHARSET = frozenset(string.printable) - {"\x0b", "\x0c"}
MAX_CAPTION_CHARS = 200
MAX_TITLE_CHARS = 80


class TextObservation(gym.ObservationWrapper):
    """Observation ``{"text": str, "turn": int}``: the dialog so far as numbered lines.

    Each turn's line names the shown item (with its product title where the
    catalog has titles) and the shopper's caption. In ``"topk"`` mode a block
    ``candidates:`` follows with one line per candidate index. Text longer
    than the space's ``max_length`` keeps its end, where the newest turns are.

    Args:
        env: a ``FashionDialogEnv``, possibly wrapped.
        include_arrays: also keep the array entries of the original
            observation (``"tokens"``, ``"features"``, ...).

    The text is built from ``info`` and the environment's state after each
    ``reset`` and ``step``, so it needs no access to the simulator.
    """

    def __init__(self, env: gym.Env, include_arrays: bool = False) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, FashionDialogEnv):
            raise ConfigError(f"TextObservation wraps a FashionDialogEnv, got {type(base).__name__}")
        self._base = base
        self._include_arrays = include_arrays
        config = base.config
        line_chars = MAX_CAPTION_CHARS + MAX_TITLE_CHARS + 64
        self._max_length = line_chars * (config.max_turns + 1)
        if config.action_type == "topk":
            self._max_length += (MAX_TITLE_CHARS + 32) * config.top_k

        text_space = spaces.Text(max_length=self._max_length, min_length=0, charset=TEXT_CHARSET)
        subspaces: dict[str, spaces.Space] = {"text": text_space, "turn": env.observation_space["turn"]}
        if include_arrays:
            subspaces.update({key: space for key, space in env.observation_space.spaces.items() if key != "turn"})
        self.observation_space = spaces.Dict(subspaces)
        self._lines: list[str] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._lines = []
        self._add_turn(info)
        return self.observation(observation), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._add_turn(info)
        return self.observation(observation), reward, terminated, truncated, info

    def observation(self, observation: dict) -> dict:
        lines = list(self._lines)
        candidates = self._base.candidate_ids
        if candidates:
            lines.append("candidates:")
            lines.extend(f"  {number}: {self._describe_item(item_id)}" for number, item_id in enumerate(candidates))
        text = "\n".join(lines)
        if len(text) > self._max_length:
            text = text[-self._max_length :]

        result: dict[str, Any] = {"text": text, "turn": observation["turn"]}
        if self._include_arrays:
            result.update({key: value for key, value in observation.items() if key != "turn"})
        return result

    def _add_turn(self, info: dict) -> None:
        turn = len(self._lines)
        caption = _to_charset(info["caption"])[:MAX_CAPTION_CHARS]
        feedback = f'shopper: "{caption}"' if caption else "shopper: (no caption, the episode is over)"
        self._lines.append(f"turn {turn}: shown {self._describe_item(info['shown_id'])}; {feedback}")

    def _describe_item(self, item_id: str) -> str:
        catalog = self._base.catalog
        if catalog.titles is None:
            return _to_charset(item_id)
        title = _to_charset(catalog.titles[catalog.index_of(item_id)])[:MAX_TITLE_CHARS]
        return f"{_to_charset(item_id)} ({title})" if title else _to_charset(item_id)


def _to_charset(text: str) -> str:
    """Transliterate ``text`` to :data:`TEXT_CHARSET`: accents dropped, other characters removed."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return "".join(character for character in ascii_text if character in TEXT_CHARSET and character not in "\r\n")


class FlatDialogObservation(gym.ObservationWrapper):
    """Observation with every multi-dimensional ``Box`` entry flattened to 1-D, row after row.

    ``"tokens"`` of shape ``(T, L)`` becomes ``(T * L,)``, and likewise
    ``"features"``, ``"attributes"`` and ``"candidates"``; ``"turn"`` is kept.
    Bounds and dtypes are unchanged.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Dict):
            raise ConfigError(f"FlatDialogObservation needs a Dict observation space, got {env.observation_space}")
        flat: dict[str, spaces.Space] = {}
        for key, space in env.observation_space.spaces.items():
            if isinstance(space, spaces.Box) and len(space.shape) > 1:
                flat[key] = spaces.Box(space.low.reshape(-1), space.high.reshape(-1), dtype=space.dtype)
            else:
                flat[key] = space
        self.observation_space = spaces.Dict(flat)

    def observation(self, observation: dict) -> dict:
        return {
            key: np.reshape(value, -1) if np.ndim(value) > 1 else value for key, value in observation.items()
        }
