"""Audio plumbing: Opus codec, resampling, WAV I/O, downlink pacing and clocks.

Modules (import them directly; this package imports nothing eagerly):

* `xiaozhi_local.audio.opus`: `OpusEncoder`, `OpusDecoder`, `packet_duration_ms`.
* `xiaozhi_local.audio.resample`: `resample`, `Resampler` (soxr).
* `xiaozhi_local.audio.wav`: `read_wav`, `read_wav_16k`, `parse_wav`, `write_wav`, `wav_bytes`.
* `xiaozhi_local.audio.pacer`: `Pacer`, the pure real-time pacing state machine.
* `xiaozhi_local.audio.clock`: `Clock`, `MonotonicClock`, `FakeClock`.
"""
