"""Silero VAD (v5/v6 ONNX) run directly with onnxruntime.

One :class:`SileroVad` holds the ONNX session and is shared by every session; each session
gets its own :class:`SileroVadStream` with the model's recurrent state. onnxruntime's
``InferenceSession.run`` is thread-safe, so streams may run on different threads at once.

The model takes, per call, 512 new samples at 16 kHz (float32 in [-1, 1]) preceded by the
last 64 samples of the previous window (the "context"), the recurrent state ``[2, 1, 128]``
and the sample rate as an int64 scalar; it returns the speech probability ``[1, 1]`` and the
next state. This mirrors ``OnnxWrapper`` of the silero-vad package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]
from numpy.typing import NDArray

from xiaozhi_local.errors import EngineError

from .base import PCM

__all__ = ["CONTEXT_SAMPLES", "SAMPLE_RATE", "WINDOW_SAMPLES", "SileroVad", "SileroVadStream"]

SAMPLE_RATE: Final = 16000
WINDOW_SAMPLES: Final = 512
"""New samples per model call (32 ms at 16 kHz)."""
CONTEXT_SAMPLES: Final = 64
"""Samples of the previous window prepended to each call (Silero v5+)."""
_STATE_SHAPE: Final = (2, 1, 128)
_EXPECTED_INPUTS: Final = frozenset({"input", "state", "sr"})


class SileroVad:
    """The shared Silero model; :meth:`stream` hands out per-session state."""

    sample_rate: int = SAMPLE_RATE

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise EngineError(f"Silero VAD model file not found: {model_path}")
        if threads < 1:
            raise EngineError(f"VAD threads must be at least 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise EngineError(f"cannot load the Silero VAD model {model_path}: {exc}") from exc
        inputs = {i.name for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs != _EXPECTED_INPUTS or len(outputs) != 2:
            raise EngineError(f"{model_path} is not a Silero VAD v5/v6 model (inputs {sorted(inputs)}, "
                              f"outputs {outputs}; expected inputs {sorted(_EXPECTED_INPUTS)})")
        self._outputs = outputs
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.model_path = model_path

    def stream(self) -> SileroVadStream:
        return SileroVadStream(self)

    def _infer(self, window: NDArray[np.float32], state: NDArray[np.float32]) -> tuple[float, NDArray[np.float32]]:
        """One model call: ``window`` is context + new samples, shape ``[1, 576]``."""
        prob, new_state = self._session.run(self._outputs, {"input": window, "state": state, "sr": self._sr})
        return float(prob.reshape(-1)[0]), new_state


class SileroVadStream:
    """One session's VAD state: sample remainder, 64-sample context and recurrent state.

    Not thread-safe (one per session); the shared model is.
    """

    window_samples: int = WINDOW_SAMPLES

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._pending = np.zeros(0, dtype=np.int16)
        self._input = np.zeros((1, CONTEXT_SAMPLES + WINDOW_SAMPLES), dtype=np.float32)
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)

    def accept(self, pcm: PCM) -> list[float]:
        """Speech probabilities, one per complete 512-sample window; the remainder waits."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            kind = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
            raise EngineError(f"the VAD takes 16 kHz mono int16 samples, got {kind}")
        if pcm.ndim != 1:
            raise EngineError(f"the VAD takes mono samples shaped (n,), got shape {pcm.shape}")
        samples = np.concatenate((self._pending, pcm)) if self._pending.size else pcm
        complete = samples.size // WINDOW_SAMPLES * WINDOW_SAMPLES
        probs: list[float] = []
        buf = self._input
        for start in range(0, complete, WINDOW_SAMPLES):
            # Context (last 64 samples of the previous window) followed by the new window.
            buf[0, :CONTEXT_SAMPLES] = buf[0, WINDOW_SAMPLES:]
            np.multiply(samples[start:start + WINDOW_SAMPLES], 1.0 / 32768.0, out=buf[0, CONTEXT_SAMPLES:],
                        casting="unsafe")
            prob, self._state = self._vad._infer(buf, self._state)
            probs.append(prob)
        self._pending = samples[complete:].copy()
        return probs

    def reset(self) -> None:
        """Forget everything heard so far (new utterance / new session)."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._input.fill(0.0)
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
