"""Voiceprints: who is speaking, with Resemblyzer's GE2E speaker encoder and no torch.

Modules (import them directly):

* :mod:`.torch_pickle` - read tensors from a torch ``.pt`` file (zip or legacy) without running pickle code.
* :mod:`.mel` - Resemblyzer's 40-band mel spectrogram (25 ms window, 10 ms hop) in numpy.
* :mod:`.lstm` - the GE2E weights and the reference numpy forward pass (3-layer LSTM → linear → ReLU).
* :mod:`.onnx_graph` - the same network as an in-memory ONNX graph for onnxruntime (the fast path).
* :mod:`.encoder` - `SpeakerEncoder`: 16 kHz int16 speech → 256-d unit embedding; thread-safe.
* :mod:`.checks` - enrollment audio checks raising `EnrollmentError` with what is wrong and what to do.
* :mod:`.identify` - pure: an embedding against enrolled speakers → `Match` (name or unknown, scores).
"""
