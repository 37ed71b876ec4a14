"""Dev only: write the GE2E reference fixture that tests/speaker compares our torch-free encoder against.

Needs torch, librosa and resemblyzer, which must never enter the project's venv. Run it from the
repository root with a separate venv:

    python3 -m venv /tmp/torchref-venv
    /tmp/torchref-venv/bin/pip install --find-links /opt/wheels torch==2.13.0 resemblyzer==0.1.4 \
        librosa soxr piper-tts==1.8.0 "setuptools<81"   # webrtcvad (resemblyzer's) imports pkg_resources
    /tmp/torchref-venv/bin/python scripts/dev/make_ge2e_fixture.py [--model PATH/pretrained.pt]

It writes into tests/speaker/fixtures/:

* ``ge2e_*.wav`` — short 16 kHz clips synthesised with espeak-ng (Debian package ``espeak-ng``) and one
  with the catalog's Piper voice (a natural-sounding voice, far from the espeak ones), kept when they
  already exist so the reference does not churn (``--regenerate-wavs`` to redo them);
* ``ge2e_reference.json`` — for each clip, Resemblyzer's own ``VoiceEncoder.embed_utterance`` (torch)
  utterance and partial embeddings, computed on ``normalize_volume(wav, -30)`` — the preprocessing our
  encoder uses (Resemblyzer only raises quiet audio and also trims silences with webrtcvad; we level
  both ways and drop the trimming, see xiaozhi_local/speaker/encoder.py; the JSON records how much
  Resemblyzer's full ``preprocess_wav`` would have changed each embedding);
* ``tiny_zip.pt`` / ``tiny_legacy.pt`` plus ``tiny_checkpoints.json`` — small checkpoints in both torch
  formats, with their expected values, for the loader tests.

Before writing, it checks our numpy mel filterbank and spectrogram against librosa and our checkpoint
loader against ``torch.load``, and stops if they differ.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import subprocess
import sys
import tempfile
import warnings
import wave
from pathlib import Path

import librosa
import numpy as np
import resemblyzer
import soxr
import torch
from resemblyzer import VoiceEncoder, audio

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from xiaozhi_local.speaker import mel as our_mel  # noqa: E402
from xiaozhi_local.speaker.torch_pickle import load_checkpoint  # noqa: E402

FIXTURES = REPO / "tests" / "speaker" / "fixtures"
MODELS = Path.home() / ".cache/xiaozhi-local/test-home/models"
DEFAULT_MODEL = MODELS / "ge2e-resemblyzer/pretrained.pt"
PIPER_VOICE = MODELS / "piper-en-us-joe-medium/en_US-joe-medium.onnx"

# (file stem, voice, words per minute, text): espeak-ng voices, or "piper" for the catalog's Piper voice.
CLIPS = [
    ("ge2e_en-us_m3", "en-us+m3", 175, "Please remember that the garden gate stays open until seven."),
    ("ge2e_en_f3", "en+f3", 165, "My sister bought a small green teapot at the market today."),
    ("ge2e_de_m1_short", "de+m1", 175, "Turn on the light."),
    ("ge2e_en-gb-scotland_f2", "en-gb-scotland+f2", 170,
     "The weather will be windy tomorrow morning, so take a warm coat and an umbrella when you leave."),
    ("ge2e_piper_joe", "piper", 0, "Could you tell me how long the bus takes to get to the station from here?"),
]


def synthesize(voice: str, wpm: int, text: str) -> np.ndarray:
    if voice == "piper":
        from piper import PiperVoice

        chunks = list(PiperVoice.load(str(PIPER_VOICE)).synthesize(text))
        pcm = np.concatenate([c.audio_int16_array for c in chunks])
        return soxr.resample(pcm, chunks[0].sample_rate, 16000).astype(np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(out), text], check=True)
        with wave.open(str(out)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return soxr.resample(pcm, rate, 16000).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.astype("<i2").tobytes())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def check_mel(wavs: list[np.ndarray]) -> float:
    ref_fb = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    fb_err = float(np.abs(ref_fb - our_mel.mel_filterbank()).max() / np.abs(ref_fb).max())
    worst = fb_err
    for pcm in wavs:
        wav = pcm.astype(np.float32) / 32768.0
        ref = audio.wav_to_mel_spectrogram(wav)
        ours = our_mel.mel_spectrogram(wav)
        assert ref.shape == ours.shape, (ref.shape, ours.shape)
        worst = max(worst, float(np.abs(ref - ours).max() / np.abs(ref).max()))
    if worst > 1e-5:
        raise SystemExit(f"our mel spectrogram differs from librosa's: max relative error {worst:.2e}")
    return worst


def check_loader(model: Path) -> None:
    ref = torch.load(model, map_location="cpu", weights_only=False)["model_state"]
    ours = load_checkpoint(model)["model_state"]
    for name, tensor in ref.items():
        if not np.array_equal(tensor.numpy(), ours[name]):
            raise SystemExit(f"our checkpoint loader disagrees with torch.load on {name}")


def tiny_checkpoints(regenerate: bool) -> None:
    base = torch.arange(24, dtype=torch.float32) * 0.5 - 3
    state = collections.OrderedDict(
        transposed=base[:6].reshape(2, 3).t(),  # non-contiguous strides
        offset_view=base[10:14].reshape(2, 2),  # storage offset 10 into a shared storage
        int64=torch.tensor([7, -3, 2**40], dtype=torch.int64),
        float64=torch.tensor([[1.25, -2.5]], dtype=torch.float64),
        parameter=torch.nn.Parameter(torch.full((3,), 0.75)),
    )
    payload = {"model_state": state, "step": 42}
    if regenerate or not (FIXTURES / "tiny_zip.pt").exists():  # the zip format embeds a random id: avoid churn
        torch.save(payload, FIXTURES / "tiny_zip.pt")
        torch.save(payload, FIXTURES / "tiny_legacy.pt", _use_new_zipfile_serialization=False)
    expected = {name: {"dtype": str(t.detach().numpy().dtype), "values": t.detach().numpy().tolist()}
                for name, t in state.items()}
    (FIXTURES / "tiny_checkpoints.json").write_text(json.dumps({"step": 42, "model_state": expected}, indent=1) + "\n")
    for name in ("tiny_zip.pt", "tiny_legacy.pt"):
        loaded = load_checkpoint(FIXTURES / name)["model_state"]
        for key, tensor in state.items():
            assert np.array_equal(loaded[key], tensor.detach().numpy()), (name, key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="Resemblyzer's pretrained.pt")
    parser.add_argument("--regenerate-wavs", action="store_true",
                        help="synthesise the clips and rewrite the tiny checkpoints again")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    FIXTURES.mkdir(parents=True, exist_ok=True)

    wavs = []
    for stem, voice, wpm, text in CLIPS:
        path = FIXTURES / f"{stem}.wav"
        if args.regenerate_wavs or not path.exists():
            write_wav(path, synthesize(voice, wpm, text))
        wavs.append(read_wav(path))

    mel_err = check_mel(wavs)
    check_loader(args.model)
    tiny_checkpoints(args.regenerate_wavs)

    encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=args.model)
    clips = []
    for (stem, voice, wpm, text), pcm in zip(CLIPS, wavs, strict=True):
        wav = pcm.astype(np.float32) / 32768.0
        prepared = audio.normalize_volume(wav, resemblyzer.hparams.audio_norm_target_dBFS)
        embed, partials, _ = encoder.embed_utterance(prepared.astype(np.float32), return_partials=True)
        full = encoder.embed_utterance(audio.preprocess_wav(wav))  # raise-only + webrtcvad trimming
        clips.append({
            "file": f"{stem}.wav", "voice": voice, "words_per_minute": wpm, "text": text,
            "samples": len(pcm),
            "cosine_vs_resemblyzer_preprocess_wav": round(float(embed @ full), 6),
            "embedding": [round(float(v), 8) for v in embed],
            "partials": [[round(float(v), 8) for v in row] for row in partials],
        })
        print(f"{stem}: {len(pcm) / 16000:.2f} s, {len(partials)} partials, "
              f"cosine with resemblyzer's preprocess_wav {float(embed @ full):.4f}")

    reference = {
        "generator": "scripts/dev/make_ge2e_fixture.py",
        "torch": torch.__version__,
        "resemblyzer": "0.1.4",
        "librosa": librosa.__version__,
        "model_sha256": hashlib.sha256(args.model.read_bytes()).hexdigest(),
        "preprocessing": "int16/32768, resemblyzer.audio.normalize_volume(-30 dBFS) (raise and lower); "
                         "no webrtcvad trimming; VoiceEncoder.embed_utterance(rate=1.3, min_coverage=0.75)",
        "mel_max_relative_error_vs_librosa": mel_err,
        "clips": clips,
    }
    (FIXTURES / "ge2e_reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"mel vs librosa: max relative error {mel_err:.2e}; loader == torch.load; wrote {FIXTURES}")


if __name__ == "__main__":
    main()
