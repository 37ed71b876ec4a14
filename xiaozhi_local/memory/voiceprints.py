"""Voiceprints: enrolling a voice under a name and telling who is speaking, over the store and the encoder.

A voiceprint keeps one GE2E embedding per enrollment clip (not an average), with the speaker model's
catalog id and :data:`PREPROCESSING` version: voiceprints made with another model or preprocessing are
not compared (their scores would mean nothing) and ``xiaozhi voice list`` marks them stale.

Identification embeds the utterance's speech (silences trimmed) and compares it with each enrolled
speaker's centroid (:func:`xiaozhi_local.speaker.identify.identify`); utterances with less than
:data:`MIN_IDENTIFY_SPEECH_S` of speech are not judged at all. The enrolled set is cached and
reloaded when the table changes (the CLI may enroll while the server runs). Methods are blocking:
the assistant calls them in worker threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from ..errors import EnrollmentError, VoiceprintError
from ..speaker.checks import EnrollmentLimits, Problem, check_enrollment, trim_silence
from ..speaker.identify import DEFAULT_THRESHOLD, Match, centroid, identify
from ..store.memory import MemoryStore, Voiceprint

__all__ = ["MAX_CLIPS", "MAX_NAME", "MIN_IDENTIFY_SPEECH_S", "PREPROCESSING", "Enrollment", "Identification",
           "VoiceprintService", "clean_name"]

log = logging.getLogger(__name__)

PREPROCESSING: Final = "ge2e/level-30dBFS/energy-trim/1"
"""How clips are prepared before embedding (bump when that changes: older voiceprints go stale)."""
MIN_IDENTIFY_SPEECH_S: Final = 1.0
"""Shorter speech ("yes", "thanks") is not judged: GE2E embeddings of it are unreliable."""
CLIP_TARGET_S: Final = 3.6
"""Speech per clip when building enrollment clips from a session's utterances (the check wants 3 s
after its own trimming)."""
MAX_CLIPS: Final = 10
"""Clips kept per voiceprint when a voice is enrolled again (the most recent)."""
MAX_NAME: Final = 40
SAMPLE_RATE: Final = 16000

Pcm = npt.NDArray[np.int16]


class _Encoder(Protocol):
    def embed(self, pcm: Pcm) -> npt.NDArray[np.float32]: ...

    def embed_with_partials(self, pcm: Pcm) -> object: ...


@dataclass(frozen=True)
class Enrollment:
    """A checked enrollment, ready to store (:meth:`VoiceprintService.save`)."""

    name: str
    embeddings: npt.NDArray[np.float32]
    added: bool
    """Adds clips to the person's existing voiceprint (rather than creating or replacing one)."""


@dataclass(frozen=True)
class Identification:
    """Who spoke one utterance."""

    match: Match | None
    """None when there was too little speech to judge (or nobody is enrolled)."""
    speech_s: float

    @property
    def name(self) -> str | None:
        return None if self.match is None else self.match.name

    @property
    def decided(self) -> bool:
        """Was the utterance judged (a name, or "unknown")?"""
        return self.match is not None


def clean_name(name: str) -> str:
    """A speaker name as stored: single spaces, a capital first letter; VoiceprintError if unusable."""
    clean = " ".join(name.split()).strip(" .,!?;:\"'")
    if not clean or len(clean) > MAX_NAME or not clean.isprintable() or clean[0].isdigit():
        raise VoiceprintError(f"a speaker name is 1 to {MAX_NAME} printable characters, not starting with a digit; "
                              f"got {name!r}")
    return clean[0].upper() + clean[1:]


class VoiceprintService:
    def __init__(self, store: MemoryStore, encoder: _Encoder, *, model_id: str,
                 threshold: float = DEFAULT_THRESHOLD, min_clips: int = 3, limits: EnrollmentLimits | None = None):
        self.store = store
        self.encoder = encoder
        self.model_id = model_id
        self.threshold = threshold
        self.min_clips = min_clips
        self.limits = limits or EnrollmentLimits()
        self._lock = threading.Lock()
        self._version: tuple[int, float, int] | None = None
        self._gallery: dict[str, npt.NDArray[np.float32]] = {}

    # ---- enrolled voices ----------------------------------------------------------------------
    def is_current(self, voiceprint: Voiceprint) -> bool:
        """Made with this model and preprocessing (so comparable with new embeddings)?"""
        return voiceprint.model_id == self.model_id and voiceprint.preprocessing == PREPROCESSING

    def gallery(self) -> dict[str, npt.NDArray[np.float32]]:
        """name → (clips, 256) embeddings of every current voiceprint (cached until the table changes)."""
        version = self.store.voiceprints_version()
        with self._lock:
            if version != self._version:
                gallery = {}
                for vp in self.store.voiceprints():
                    if self.is_current(vp):
                        gallery[vp.name] = vp.embeddings
                    else:
                        log.warning("the voiceprint of %s was made with %s (%s), not %s (%s); it is ignored until "
                                    "enrolled again", vp.name, vp.model_id, vp.preprocessing, self.model_id,
                                    PREPROCESSING)
                self._gallery, self._version = gallery, version
            return self._gallery

    def enroll(self, name: str, clips: Sequence[tuple[str, Pcm]], *, source: str = "cli",
               keep_previous: bool = False) -> Voiceprint:
        """Check ``clips`` (each ≥ 3 s of one person's clean speech) and store their embeddings as
        ``name``'s voiceprint, replacing any before (or adding to it, with ``keep_previous``).
        Raises EnrollmentError saying what is wrong with the audio."""
        return self.save(self.prepare(name, clips, keep_previous=keep_previous), source=source)

    def prepare(self, name: str, clips: Sequence[tuple[str, Pcm]], *, keep_previous: bool = False) -> Enrollment:
        """The checks and embeddings of :meth:`enroll`, without storing anything."""
        name = clean_name(name)
        previous = self.store.voiceprint(name)
        adding = keep_previous and previous is not None and self.is_current(previous)
        needed = 1 if adding else self.min_clips
        if len(clips) < needed:
            raise EnrollmentError("", Problem.TOO_SHORT,
                                  f"{len(clips)} clip{'s' if len(clips) != 1 else ''} given; enrolling needs at least "
                                  f"{self.min_clips} (5 identify better), each with 3 s of speech or more")
        checked = check_enrollment(list(clips), self.encoder, limits=self.limits)  # type: ignore[arg-type]
        embeddings = np.stack([c.embedding for c in checked]).astype(np.float32)
        if adding:
            assert previous is not None
            known = centroid(previous.embeddings)
            for clip in checked:
                score = float(clip.embedding @ known)
                if score < self.threshold:  # a clip added to a voice must be recognised as that voice
                    raise EnrollmentError(clip.label, Problem.INCONSISTENT,
                                          f"does not sound like {previous.name}'s enrolled voice (similarity "
                                          f"{score:.2f} < {self.threshold:.2f}); record it again, or enroll "
                                          "from scratch with --replace")
            embeddings = np.concatenate([previous.embeddings, embeddings])[-MAX_CLIPS:]
        return Enrollment(previous.name if previous else name, embeddings, added=adding)

    def save(self, enrollment: Enrollment, *, source: str) -> Voiceprint:
        saved = self.store.save_voiceprint(enrollment.name, enrollment.embeddings, model_id=self.model_id,
                                           preprocessing=PREPROCESSING, source=source)
        log.info("voiceprint of %s saved (%d clips, %s)", saved.name, len(saved.embeddings), source)
        return saved

    # ---- who is speaking ----------------------------------------------------------------------
    def embed_speech(self, pcm: Pcm) -> tuple[npt.NDArray[np.float32] | None, float]:
        """The embedding of the speech in ``pcm`` (None if it is shorter than MIN_IDENTIFY_SPEECH_S)."""
        speech = trim_silence(np.asarray(pcm, dtype=np.int16))
        seconds = len(speech) / SAMPLE_RATE
        if seconds < MIN_IDENTIFY_SPEECH_S:
            return None, seconds
        return self.encoder.embed(speech), seconds

    def identify(self, pcm: Pcm) -> Identification:
        gallery = self.gallery()
        if not gallery:
            return Identification(None, 0.0)
        embedding, seconds = self.embed_speech(pcm)
        if embedding is None:
            return Identification(None, seconds)
        return Identification(identify(embedding, gallery, self.threshold), seconds)

    def clips_from_utterances(self, utterances: Sequence[Pcm]) -> tuple[list[tuple[str, Pcm]], float]:
        """Consecutive utterances' speech joined into clips of about CLIP_TARGET_S (a shorter rest is
        dropped); returns the clips and the seconds of speech there were in all."""
        clips: list[tuple[str, Pcm]] = []
        pending: list[Pcm] = []
        first = 1
        total = 0.0
        for i, pcm in enumerate(utterances, start=1):
            speech = trim_silence(np.asarray(pcm, dtype=np.int16))
            total += len(speech) / SAMPLE_RATE
            pending.append(speech)
            if sum(len(p) for p in pending) >= CLIP_TARGET_S * SAMPLE_RATE:
                label = f"utterance {first}" if first == i else f"utterances {first}-{i}"
                clips.append((label, np.concatenate(pending)))
                pending, first = [], i + 1
        return clips, total
