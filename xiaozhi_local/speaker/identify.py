"""Who is speaking: cosine similarity of an utterance embedding against enrolled speakers. Pure.

Each enrolled speaker is an ``(n_clips, 256)`` array of clip embeddings. The default score is
the cosine with the speaker's *centroid* (the L2-normalised mean of the clips, Resemblyzer's
``embed_speaker``); ``scoring="best_clip"`` takes the best single clip instead. The best speaker
wins if its score reaches the threshold, else the voice is unknown (`Match.name` is None).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_THRESHOLD", "Match", "Scoring", "centroid", "identify", "score_speakers"]

DEFAULT_THRESHOLD: Final = 0.88
"""Cosine needed to name a speaker.

Chosen on bench/speaker.py's synthetic voices (the lowest threshold with ≤ 2 % false accepts; see
bench/results/speaker.md). Synthetic voices are more alike than real people, so for real voices this
errs towards "unknown" rather than a wrong name; lower it in the config if known people go unrecognised.
"""

Scoring = Literal["centroid", "best_clip"]


@dataclass(frozen=True)
class Match:
    name: str | None
    """The best-scoring enrolled speaker, or None when no score reaches the threshold."""
    score: float
    """The best speaker's score (cosine similarity, -1..1), whether or not it passed."""
    ranking: tuple[tuple[str, float], ...]
    """Every enrolled speaker with its score, best first."""

    @property
    def known(self) -> bool:
        return self.name is not None


def _unit(v: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("cannot compare a zero embedding")
    return v / norm


def centroid(clips: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """The L2-normalised mean of a speaker's (n, d) clip embeddings (each normalised first)."""
    rows = np.atleast_2d(np.asarray(clips))
    if rows.shape[0] == 0:
        raise ValueError("a speaker needs at least one clip embedding")
    return _unit(_unit(rows).mean(axis=0)).astype(np.float32)


def score_speakers(embedding: npt.NDArray[np.floating], enrolled: Mapping[str, npt.NDArray[np.floating]],
                   scoring: Scoring = "centroid") -> list[tuple[str, float]]:
    """(name, cosine) for every enrolled speaker, best first (ties by name)."""
    probe = _unit(np.asarray(embedding).reshape(-1))
    scores: list[tuple[str, float]] = []
    for name, clips in enrolled.items():
        rows = np.atleast_2d(np.asarray(clips))
        if rows.shape[0] == 0:
            continue
        if rows.shape[1] != probe.shape[0]:
            raise ValueError(f"speaker {name!r} has {rows.shape[1]}-d embeddings, the probe {probe.shape[0]}-d")
        if scoring == "centroid":
            score = float(centroid(rows).astype(np.float64) @ probe)
        elif scoring == "best_clip":
            score = float(np.max(_unit(rows) @ probe))
        else:
            raise ValueError(f"unknown scoring {scoring!r}; use 'centroid' or 'best_clip'")
        scores.append((name, score))
    scores.sort(key=lambda item: (-item[1], item[0]))
    return scores


def identify(embedding: npt.NDArray[np.floating], enrolled: Mapping[str, npt.NDArray[np.floating]],
             threshold: float = DEFAULT_THRESHOLD, *, scoring: Scoring = "centroid") -> Match:
    """The enrolled speaker whose voice matches `embedding` best, if the score reaches `threshold`."""
    ranking = tuple(score_speakers(embedding, enrolled, scoring))
    if not ranking:
        return Match(name=None, score=float("-inf"), ranking=())
    best_name, best_score = ranking[0]
    return Match(name=best_name if best_score >= threshold else None, score=best_score, ranking=ranking)
