"""The bench's questions: the plan of turns, when Chinese is asked, trimming and the WAV cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from xiaozhi_local.audio.wav import read_wav
from xiaozhi_local.bench.utterances import (
    CHINESE,
    ENGLISH,
    chinese_support,
    plan_turns,
    synthesize_all,
    trim_silence,
    voice_entry,
)
from xiaozhi_local.config import load_config
from xiaozhi_local.errors import ModelMissingError
from xiaozhi_local.models.catalog import ModelEntry, load_catalog


def entry(model_id: str, role: str, languages: list[str]) -> ModelEntry:
    base = load_catalog().get("piper-en-us-joe-medium" if role == "tts" else "whisper-base")
    return base.model_copy(update={"id": model_id, "languages": tuple(languages)})


def test_plan_is_english_only_without_chinese_and_cycles() -> None:
    plan = plan_turns(25, chinese=False)
    assert len(plan) == 25 and all(u.lang == "en" for u in plan)
    assert plan[:20] == list(ENGLISH) and plan[20] == ENGLISH[0]
    assert plan_turns(1, chinese=False)[0].text == "What is two plus two?"


def test_plan_mixes_in_chinese_after_every_fifth_question() -> None:
    plan = plan_turns(len(ENGLISH) + len(CHINESE), chinese=True)
    assert [u.id for u in plan[:7]] == ["en01", "en02", "en03", "en04", "en05", "zh01", "en06"]
    assert {u.id for u in plan} == {u.id for u in (*ENGLISH, *CHINESE)}


def test_chinese_needs_a_chinese_voice_and_asr() -> None:
    en_voice, zh_voice = entry("v-en", "tts", ["en"]), entry("v-zh", "tts", ["zh"])
    whisper, tiny_en = entry("w", "asr", ["*"]), entry("w-en", "asr", ["en"])
    reason = chinese_support(en_voice, whisper)
    assert reason is not None and "v-en speaks en only" in reason
    assert chinese_support(zh_voice, whisper) is None
    reason = chinese_support(zh_voice, tiny_en)
    assert reason is not None and "w-en does not understand Chinese" in reason
    reason = chinese_support(zh_voice, None)
    assert reason is not None and "unknown" in reason


def test_trim_silence_keeps_the_voiced_part_with_a_margin() -> None:
    rate = 16000
    tone = (8000 * np.sin(2 * np.pi * 220 * np.arange(rate // 2) / rate)).astype(np.int16)
    silence = np.zeros(rate, dtype=np.int16)
    trimmed = trim_silence(np.concatenate([silence, tone, silence]), rate, margin_ms=40)
    assert abs(trimmed.shape[0] - (tone.shape[0] + 2 * 640)) <= 160
    assert np.abs(trimmed[:320]).max() == 0  # the margin is silence
    assert trim_silence(silence, rate).shape == silence.shape


class FakeVoice:
    sample_rate = 22050

    def __init__(self) -> None:
        self.spoken: list[str] = []

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        self.spoken.append(text)
        n = int(self.sample_rate * 0.05 * len(text.split()))
        yield np.zeros(2205, dtype=np.int16)
        yield (6000 * np.sin(2 * np.pi * 200 * np.arange(n) / self.sample_rate)).astype(np.int16)
        yield np.zeros(4410, dtype=np.int16)


def test_synthesis_writes_16k_wavs_and_reuses_the_cache(tmp_path: Path) -> None:
    voice = FakeVoice()
    opened: list[int] = []

    def open_voice() -> FakeVoice:
        opened.append(1)
        return voice

    plan = plan_turns(3, chinese=False) + plan_turns(1, chinese=False)
    seen: list[tuple[str, bool]] = []
    spoken = synthesize_all(plan, "fake", open_voice, tmp_path, on_done=lambda u, c: seen.append((u.id, c)))
    assert list(spoken) == ["en01", "en02", "en03"] and len(voice.spoken) == 3 and opened == [1]
    pcm, rate = read_wav(spoken["en01"].wav)
    assert rate == 16000
    assert spoken["en01"].seconds == pytest.approx(pcm.shape[0] / 16000, abs=1e-3)
    assert 0.2 < spoken["en01"].seconds < 0.35  # 5 words x 50 ms + margins; the silences were trimmed
    assert seen == [("en01", False), ("en02", False), ("en03", False)]

    again = synthesize_all(plan, "fake", open_voice, tmp_path)
    assert opened == [1] and len(voice.spoken) == 3
    assert {k: v.wav for k, v in again.items()} == {k: v.wav for k, v in spoken.items()}
    other = synthesize_all(plan[:1], "another-voice", open_voice, tmp_path)
    assert other["en01"].wav != spoken["en01"].wav and opened == [1, 1]


def test_a_missing_voice_names_the_pull_command(isolated_env: Path) -> None:
    config = load_config()
    with pytest.raises(ModelMissingError) as info:
        voice_entry(config, load_catalog())
    assert f"xiaozhi models pull {config.settings.models.tts}" in str(info.value)
