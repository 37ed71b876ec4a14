"""Identification against enrolled speakers (pure: plain vectors in, a Match out)."""

from __future__ import annotations

import numpy as np
import pytest

from xiaozhi_local.speaker.identify import DEFAULT_THRESHOLD, Match, centroid, identify, score_speakers


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture
def voices() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    bases = {name: _unit(rng.random(256)) for name in ("sam", "alex", "kim")}
    # three noisy clips around each base voice
    return {name: np.stack([_unit(b + 0.05 * rng.standard_normal(256)) for _ in range(3)]) for name, b in bases.items()}


def test_an_enrolled_voice_is_named_with_a_full_ranking(voices: dict[str, np.ndarray]) -> None:
    probe = _unit(voices["alex"].mean(axis=0) + 0.01)
    match = identify(probe, voices, threshold=0.9)
    assert match.name == "alex" and match.known
    assert match.ranking[0][0] == "alex" and len(match.ranking) == 3
    scores = [score for _, score in match.ranking]
    assert scores == sorted(scores, reverse=True) and match.score == scores[0]


def test_below_the_threshold_the_voice_is_unknown_but_scored(voices: dict[str, np.ndarray]) -> None:
    stranger = _unit(np.random.default_rng(99).random(256))
    match = identify(stranger, voices, threshold=0.99)
    assert match.name is None and not match.known
    assert match.score == match.ranking[0][1] < 0.99


def test_the_threshold_is_inclusive() -> None:
    enrolled = {"sam": np.array([[1.0, 0.0]])}
    probe = np.array([0.6, 0.8])
    assert identify(probe, enrolled, threshold=0.6).name == "sam"
    assert identify(probe, enrolled, threshold=0.6001).name is None


def test_centroid_is_the_normalised_mean_of_normalised_clips() -> None:
    clips = np.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(centroid(clips), [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)


def test_best_clip_scoring_uses_the_closest_clip() -> None:
    enrolled = {"sam": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "kim": np.array([[0.6, 0.6, 0.5292]])}
    probe = np.array([1.0, 0.0, 0.0])
    assert score_speakers(probe, enrolled, "best_clip")[0] == ("sam", pytest.approx(1.0))
    by_centroid = dict(score_speakers(probe, enrolled, "centroid"))
    assert by_centroid["sam"] == pytest.approx(np.sqrt(0.5))
    with pytest.raises(ValueError, match="scoring"):
        score_speakers(probe, enrolled, "median")  # type: ignore[arg-type]


def test_nobody_enrolled_means_unknown() -> None:
    assert identify(np.ones(256), {}) == Match(name=None, score=float("-inf"), ranking=())


def test_bad_inputs_are_refused(voices: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="zero"):
        identify(np.zeros(256), voices)
    with pytest.raises(ValueError, match="256-d"):
        identify(np.ones(128), voices)


def test_default_threshold_is_a_cosine() -> None:
    assert 0.0 < DEFAULT_THRESHOLD < 1.0
