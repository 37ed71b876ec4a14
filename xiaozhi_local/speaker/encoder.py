"""Resemblyzer's GE2E voice encoder (``VoiceEncoder.embed_utterance``) without torch.

An utterance is cut into partial utterances of 160 mel frames (1.6 s) at ``rate=1.3`` per
second (a step of 77 frames, ~52 % overlap); the last partial is zero-padded when it covers at
least 75 % of its frames, else dropped. Each partial goes through a 3-layer LSTM (40 → 256),
a 256 → 256 linear layer, ReLU and L2 normalisation; the utterance embedding is the
L2-normalised mean of the partial embeddings.

Preprocessing: Resemblyzer's ``preprocess_wav`` raises the volume to −30 dBFS (never lowers it) and
cuts long silences with webrtcvad. `preprocess` brings every utterance to −30 dBFS RMS, louder ones
too: the mel spectrogram is linear power, so with raise-only normalisation the same clip at −17 and
at −43 dBFS embedded 0.92 apart, and microphone gain would leak into who-is-speaking. (On the
speaker bench, levelling both ways left clean results about the same and helped in noise.) The
webrtcvad step is dropped: the pipeline hands us VAD-trimmed utterances, and enrollment trims files
with `xiaozhi_local.speaker.checks.trim_silence`. The reference fixture is computed by Resemblyzer
on the same preprocessed input (``normalize_volume(wav, -30)``).

Backends: ``"onnxruntime"`` (default; the network as an in-memory ONNX graph, one thread) and
``"numpy"`` (the readable reference loop, several times slower). `SpeakerEncoder` keeps no
per-call state and onnxruntime sessions may be run concurrently, so one instance serves every
session thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from xiaozhi_local.errors import EngineError
from xiaozhi_local.speaker.lstm import EMBEDDING_SIZE, Ge2eWeights, forward_numpy
from xiaozhi_local.speaker.mel import HOP_LENGTH, N_MELS, SAMPLE_RATE, mel_spectrogram
from xiaozhi_local.speaker.onnx_graph import INPUT_NAME, OUTPUT_NAME, build_ge2e_onnx
from xiaozhi_local.speaker.torch_pickle import load_state_dict

__all__ = ["EMBEDDING_SIZE", "PARTIAL_FRAMES", "Backend", "Embedding", "SpeakerEncoder", "partial_slices",
           "preprocess"]

PARTIAL_FRAMES: Final = 160
"""Frames per partial utterance (1.6 s)."""
PARTIALS_RATE: Final = 1.3
MIN_COVERAGE: Final = 0.75
TARGET_DBFS: Final = -30.0

Backend = Literal["onnxruntime", "numpy"]
Float32Array = npt.NDArray[np.float32]
Audio = npt.NDArray[np.int16] | npt.NDArray[np.float32]


@dataclass(frozen=True)
class Embedding:
    """An utterance's embedding and the embeddings of its partial utterances."""

    vector: Float32Array
    """(256,), L2-normalised."""
    partials: Float32Array
    """(n_partials, 256), each L2-normalised."""


def preprocess(pcm: Audio) -> Float32Array:
    """16 kHz int16 (or float in [-1, 1]) → float32 waveform scaled to −30 dBFS RMS (silence stays silent)."""
    wav = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else np.asarray(pcm, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected mono samples shaped (n,), got {wav.shape}")
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    if rms <= 0.0:
        return wav
    gain_db = TARGET_DBFS - 20.0 * np.log10(rms)
    return (wav * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def partial_slices(n_samples: int, rate: float = PARTIALS_RATE, min_coverage: float = MIN_COVERAGE) -> list[slice]:
    """Mel-frame slices of the partial utterances (``VoiceEncoder.compute_partial_slices``)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP_LENGTH))
    frame_step = round((SAMPLE_RATE / rate) / HOP_LENGTH)
    if not 0 < frame_step <= PARTIAL_FRAMES:
        raise ValueError(f"partial rate {rate} gives a frame step of {frame_step}, outside 1..{PARTIAL_FRAMES}")
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    coverage = (n_samples - slices[-1].start * HOP_LENGTH) / (PARTIAL_FRAMES * HOP_LENGTH)
    if coverage < min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


def _l2_normalize(v: npt.NDArray[np.float32], axis: int = -1) -> Float32Array:
    norm = np.linalg.norm(v, axis=axis, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0).astype(np.float32)


class SpeakerEncoder:
    """GE2E speaker embeddings (256-d) for 16 kHz mono speech. Thread-safe."""

    sample_rate: Final = SAMPLE_RATE
    embedding_size: Final = EMBEDDING_SIZE

    def __init__(self, weights: Ge2eWeights, *, backend: Backend = "onnxruntime"):
        self.weights = weights
        self.backend: Backend = backend
        self._session: Any = None
        if backend == "onnxruntime":
            import onnxruntime as ort  # heavy import, only when asked for

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1  # the LSTM is sequential; leave the other cores to ASR
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                self._session = ort.InferenceSession(build_ge2e_onnx(weights), options,
                                                     providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise EngineError(f"speaker encoder: onnxruntime could not build the GE2E graph: {exc}") from exc
        elif backend != "numpy":
            raise EngineError(f"unknown speaker encoder backend {backend!r}; use 'onnxruntime' or 'numpy'")

    @classmethod
    def load(cls, path: str | Path, *, backend: Backend = "onnxruntime") -> SpeakerEncoder:
        """Load Resemblyzer's ``pretrained.pt`` (a torch checkpoint, read without torch or pickle code)."""
        return cls(Ge2eWeights.from_state_dict(load_state_dict(path, key="model_state")), backend=backend)

    def embed(self, pcm: Audio) -> Float32Array:
        """(256,) float32 L2-normalised embedding of one utterance of 16 kHz mono speech."""
        return self.embed_with_partials(pcm).vector

    def embed_with_partials(self, pcm: Audio) -> Embedding:
        """The utterance embedding and its partial embeddings (for consistency checks)."""
        wav = preprocess(pcm)
        slices = partial_slices(len(wav))
        needed = slices[-1].stop * HOP_LENGTH
        if needed >= len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        mel = mel_spectrogram(wav)
        partials = self.embed_mels(np.stack([mel[s] for s in slices]))
        return Embedding(vector=_l2_normalize(partials.mean(axis=0)), partials=partials)

    def embed_mels(self, mels: Float32Array) -> Float32Array:
        """(batch, frames, 40) mel spectrograms → (batch, 256) L2-normalised embeddings."""
        x = np.asarray(mels, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != N_MELS or x.shape[0] == 0:
            raise ValueError(f"expected mels shaped (batch ≥ 1, frames, {N_MELS}), got {x.shape}")
        if self._session is None:
            raw = forward_numpy(self.weights, x)
        else:
            time_major = np.ascontiguousarray(x.transpose(1, 0, 2))
            raw = self._session.run([OUTPUT_NAME], {INPUT_NAME: time_major})[0]
        return _l2_normalize(np.asarray(raw, dtype=np.float32))
