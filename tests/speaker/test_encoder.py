"""The torch-free GE2E encoder equals Resemblyzer's torch reference (tests/speaker/fixtures)."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.speaker.conftest import clip, reference
from xiaozhi_local.errors import EngineError, ModelError
from xiaozhi_local.speaker.encoder import PARTIAL_FRAMES, SpeakerEncoder, partial_slices, preprocess
from xiaozhi_local.speaker.lstm import Ge2eWeights
from xiaozhi_local.speaker.torch_pickle import load_state_dict

CLIPS = reference()["clips"]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.models
@pytest.mark.parametrize("backend", ["onnxruntime", "numpy"])
@pytest.mark.parametrize("ref", CLIPS, ids=[c["file"] for c in CLIPS])
def test_embedding_matches_the_torch_reference(request: pytest.FixtureRequest, backend: str,
                                               ref: dict[str, object]) -> None:
    encoder: SpeakerEncoder = request.getfixturevalue("encoder" if backend == "onnxruntime" else "numpy_encoder")
    pcm = clip(Path(str(ref["file"])).stem)
    assert len(pcm) == ref["samples"]
    got = encoder.embed_with_partials(pcm)
    want_partials = np.array(ref["partials"], dtype=np.float32)
    assert got.partials.shape == want_partials.shape
    assert _cos(got.vector, np.array(ref["embedding"])) >= 0.999
    for mine, theirs in zip(got.partials, want_partials, strict=True):
        assert _cos(mine, theirs) >= 0.999


@pytest.mark.models
def test_embedding_is_a_unit_vector_of_256_non_negative_floats(encoder: SpeakerEncoder) -> None:
    emb = encoder.embed(clip("ge2e_en_f3"))
    assert emb.shape == (256,) and emb.dtype == np.float32
    assert np.isclose(np.linalg.norm(emb), 1.0, atol=1e-5)
    assert (emb >= 0).all()  # ReLU before normalisation


@pytest.mark.models
def test_float_input_equals_int16_input(encoder: SpeakerEncoder) -> None:
    pcm = clip("ge2e_en-us_m3")
    np.testing.assert_allclose(encoder.embed(pcm), encoder.embed(pcm.astype(np.float32) / 32768.0), atol=1e-6)


@pytest.mark.models
def test_concurrent_calls_give_the_sequential_results(encoder: SpeakerEncoder) -> None:
    pcms = [clip(Path(c["file"]).stem) for c in CLIPS] * 3
    sequential = [encoder.embed(p) for p in pcms]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(encoder.embed, pcms))
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.models
def test_the_embedding_does_not_depend_on_the_recording_level(encoder: SpeakerEncoder) -> None:
    pcm = clip("ge2e_en-gb-scotland_f2")  # about −17 dBFS
    for gain in (0.05, 0.3):  # −26 dB and −10 dB, still well above the int16 floor
        scaled = np.round(pcm.astype(np.float32) * gain).astype(np.int16)
        assert _cos(encoder.embed(pcm), encoder.embed(scaled)) > 0.999


def test_preprocess_brings_every_level_to_minus_30_dbfs() -> None:
    rng = np.random.default_rng(0)
    for scale in (100, 8000):
        out = preprocess((rng.standard_normal(16000) * scale).astype(np.int16))
        assert np.isclose(20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2))), -30.0, atol=0.01)
    assert not preprocess(np.zeros(100, dtype=np.int16)).any()


@pytest.mark.parametrize("seconds", [0.2, 1.0, 1.6, 2.5, 4.0, 10.0])
def test_partials_cover_the_utterance_in_steps_of_77_frames(seconds: float) -> None:
    n = int(16000 * seconds)
    slices = partial_slices(n)
    assert slices[0].start == 0
    assert all(s.stop - s.start == PARTIAL_FRAMES for s in slices)
    assert all(b.start - a.start == 77 for a, b in itertools.pairwise(slices))
    last = slices[-1]
    if len(slices) > 1:  # the last partial holds ≥ 75 % real audio, and at most ~0.4 s is left uncovered
        assert n - last.start * 160 >= 0.75 * PARTIAL_FRAMES * 160
        assert n - last.stop * 160 <= 40 * 160


def test_partials_match_the_fixture_counts() -> None:
    for ref in CLIPS:
        assert len(partial_slices(ref["samples"])) == len(ref["partials"]), ref["file"]


@pytest.mark.models
def test_wrong_weights_and_backend_are_clear_errors(ge2e_path: Path) -> None:
    state = load_state_dict(ge2e_path)
    del state["linear.bias"]
    with pytest.raises(ModelError, match=r"linear\.bias"):
        Ge2eWeights.from_state_dict(state)
    state = load_state_dict(ge2e_path)
    state["lstm.weight_hh_l1"] = state["lstm.weight_hh_l1"][:, :128]
    with pytest.raises(ModelError, match="shape"):
        Ge2eWeights.from_state_dict(state)
    with pytest.raises(EngineError, match="backend"):
        SpeakerEncoder(Ge2eWeights.from_state_dict(load_state_dict(ge2e_path)), backend="torch")  # type: ignore[arg-type]
