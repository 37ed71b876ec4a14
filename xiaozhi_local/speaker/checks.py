"""Enrollment audio checks: is each clip enough clean speech of one person?

`check_clip` trims silence (an energy gate, `trim_silence`; a caller with a real VAD can pass its
own trimmer) and refuses a clip that is too quiet, clipped, shorter than 3 s of speech, or whose
partial embeddings disagree as if two people spoke. `check_enrollment` also refuses a set of clips
in which one clip does not sound like the others. Each refusal is an `EnrollmentError` saying what
is wrong and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from xiaozhi_local.errors import EnrollmentError
from xiaozhi_local.speaker.encoder import Embedding
from xiaozhi_local.speaker.identify import centroid

__all__ = ["CheckedClip", "EnrollmentError", "EnrollmentLimits", "Problem", "check_clip", "check_enrollment",
           "trim_silence"]

SAMPLE_RATE: Final = 16000
FRAME_S: Final = 0.03
_FULL_SCALE: Final = 32768.0

Pcm = npt.NDArray[np.int16]
Trimmer = Callable[[Pcm], Pcm]


class Problem(StrEnum):
    TOO_QUIET = "too_quiet"
    CLIPPED = "clipped"
    TOO_SHORT = "too_short"
    MULTI_SPEAKER = "multi_speaker"
    INCONSISTENT = "inconsistent"


class _Embedder(Protocol):
    def embed_with_partials(self, pcm: Pcm) -> Embedding: ...


@dataclass(frozen=True)
class EnrollmentLimits:
    min_speech_s: float = 3.0
    """Seconds of speech each clip needs after silence is trimmed."""
    min_level_dbfs: float = -42.0
    """RMS level of the speech below which a clip is too quiet."""
    max_clipped_fraction: float = 0.001
    """Share of speech samples in flat tops at full scale above which a clip counts as clipped."""
    min_partial_agreement: float = 0.55
    """Lowest cosine allowed between two partial embeddings (1.6 s windows) of one clip.

    Different real people score ≈ 0.4–0.6; one synthetic voice's partials went down to ≈ 0.6 in the bench.
    """
    min_clip_agreement: float = 0.65
    """Lowest cosine allowed between one clip and the centroid of the other clips."""


@dataclass(frozen=True)
class CheckedClip:
    label: str
    speech: Pcm
    """The clip with silences trimmed: what should be embedded."""
    speech_s: float
    level_dbfs: float
    clipped_fraction: float
    embedding: npt.NDArray[np.float32]
    partial_agreement: float
    """Lowest pairwise cosine between the clip's partial embeddings (1.0 with a single partial)."""


def _frame_levels(pcm: Pcm, frame: int) -> npt.NDArray[np.float64]:
    n = len(pcm) // frame
    frames = pcm[: n * frame].astype(np.float64).reshape(n, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return np.asarray(20.0 * np.log10(np.maximum(rms, 1e-3) / _FULL_SCALE))


def trim_silence(pcm: Pcm, sample_rate: int = SAMPLE_RATE, *, hangover_frames: int = 2) -> Pcm:
    """Drop silent stretches with an energy gate on 30 ms frames.

    A frame is speech if it is louder than ``max(-55 dBFS, loud - 35 dB, min(floor + 10 dB, loud - 15 dB))``
    where `loud` and `floor` are the 95th and 10th percentile frame levels (the ``loud - 15`` cap keeps a
    clip that is speech throughout); `hangover_frames` around each speech frame are kept too, so word
    onsets and short pauses survive. This is an energy gate, not a VAD: steady loud noise passes as
    "speech". Callers with a VAD engine can pass their own trimmer to `check_clip`.
    """
    frame = int(sample_rate * FRAME_S)
    levels = _frame_levels(pcm, frame)
    if levels.size == 0:
        return pcm[:0]
    loud, floor = np.percentile(levels, 95), np.percentile(levels, 10)
    speech = levels > max(-55.0, loud - 35.0, min(floor + 10.0, loud - 15.0))
    keep = speech.copy()
    for shift in range(1, hangover_frames + 1):
        keep[shift:] |= speech[:-shift]
        keep[:-shift] |= speech[shift:]
    mask = np.repeat(keep, frame)
    return pcm[: len(mask)][mask]


def _clipped_fraction(pcm: Pcm, *, run: int = 3, level: float = 0.99) -> float:
    """Share of samples inside runs of ≥ `run` consecutive samples at ≥ `level` of full scale."""
    if pcm.size == 0:
        return 0.0
    hot = np.abs(pcm.astype(np.int32)) >= int(level * 32767)
    padded = np.concatenate(([False], hot, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    lengths = edges[1::2] - edges[::2]
    return float(lengths[lengths >= run].sum() / pcm.size)


def _min_pairwise(vectors: npt.NDArray[np.float32]) -> float:
    if len(vectors) < 2:
        return 1.0
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    return float(sims[np.triu_indices(len(vectors), k=1)].min())


def check_clip(pcm: Pcm, encoder: _Embedder, *, label: str = "clip", limits: EnrollmentLimits | None = None,
               trim: Trimmer = trim_silence) -> CheckedClip:
    """Trim, check and embed one 16 kHz mono clip; raise `EnrollmentError` if it is unusable."""
    limits = limits or EnrollmentLimits()
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"expected 16 kHz mono int16 samples, got {pcm.dtype} {pcm.shape}")
    speech = trim(pcm)
    level = float(20 * np.log10(max(np.sqrt(np.mean(speech.astype(np.float64) ** 2)), 1e-3) / _FULL_SCALE)
                  ) if speech.size else float("-inf")
    if level < limits.min_level_dbfs:
        shown = "silence" if speech.size == 0 else f"speech at {level:.0f} dBFS"
        raise EnrollmentError(label, Problem.TOO_QUIET,
                              f"too quiet ({shown}; need at least {limits.min_level_dbfs:.0f} dBFS). "
                              "Speak closer to the microphone or raise the recording gain, then record again.")
    clipped = _clipped_fraction(speech)
    if clipped > limits.max_clipped_fraction:
        raise EnrollmentError(label, Problem.CLIPPED,
                              f"the recording is clipped ({clipped:.1%} of the speech is flattened at full scale). "
                              "Lower the recording gain or step back from the microphone, then record again.")
    speech_s = len(speech) / SAMPLE_RATE
    if speech_s < limits.min_speech_s:
        raise EnrollmentError(label, Problem.TOO_SHORT,
                              f"only {speech_s:.1f} s of speech after removing silence; need at least "
                              f"{limits.min_speech_s:.0f} s. Record a longer sentence or two.")
    embedded = encoder.embed_with_partials(speech)
    agreement = _min_pairwise(embedded.partials)
    if agreement < limits.min_partial_agreement:
        raise EnrollmentError(label, Problem.MULTI_SPEAKER,
                              f"parts of this clip sound like different voices (similarity {agreement:.2f} < "
                              f"{limits.min_partial_agreement:.2f}). Record one person speaking alone, "
                              "without background talk, music or TV.")
    return CheckedClip(label=label, speech=speech, speech_s=speech_s, level_dbfs=level, clipped_fraction=clipped,
                       embedding=embedded.vector, partial_agreement=agreement)


def check_enrollment(clips: Sequence[tuple[str, Pcm]], encoder: _Embedder, *,
                     limits: EnrollmentLimits | None = None, trim: Trimmer = trim_silence) -> list[CheckedClip]:
    """Check every (label, pcm) clip, then that the clips sound like one person.

    Returns the checked clips; their ``embedding`` rows are what to store for the speaker.
    """
    limits = limits or EnrollmentLimits()
    if not clips:
        raise ValueError("no clips to enroll")
    checked = [check_clip(pcm, encoder, label=label, limits=limits, trim=trim) for label, pcm in clips]
    if len(checked) == 2:
        score = float(checked[0].embedding @ checked[1].embedding)
        if score < limits.min_clip_agreement:
            raise EnrollmentError(f"{checked[0].label}, {checked[1].label}", Problem.INCONSISTENT,
                                  f"the two clips do not sound like the same person (similarity {score:.2f} < "
                                  f"{limits.min_clip_agreement:.2f}). Record them again with the same person.")
    elif len(checked) >= 3:
        embeddings = np.stack([c.embedding for c in checked])
        for i, clip in enumerate(checked):
            score = float(clip.embedding @ centroid(np.delete(embeddings, i, axis=0)))
            if score < limits.min_clip_agreement:
                raise EnrollmentError(clip.label, Problem.INCONSISTENT,
                                      f"does not sound like the same person as the other clips (similarity "
                                      f"{score:.2f} < {limits.min_clip_agreement:.2f}). Leave it out, or record "
                                      "all clips with the same person and microphone.")
    return checked
