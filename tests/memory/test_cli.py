"""`xiaozhi voice …` and `xiaozhi memory …` through Typer's runner, on a real database file, with the
real GE2E model and espeak-ng voices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.memory.conftest import models_dir
from tests.memory.voices import ENROLL_TEXTS, TEST_TEXTS, VOICES, speak_to
from xiaozhi_local.cli import app
from xiaozhi_local.config import load_config
from xiaozhi_local.store.memory import FactChange, MemoryStore, Owner, TurnRecord

DEVICE = "aa:bb:cc:00:00:01"


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("wavs")
    files: dict[str, list[Path]] = {}
    for who, voice in VOICES.items():
        files[who] = [speak_to(folder / f"{who}{i}.wav", voice, text) for i, text in enumerate(ENROLL_TEXTS)]
        files[f"{who}-test"] = [speak_to(folder / f"{who}-test.wav", voice, TEST_TEXTS[0])]
    files["short"] = [speak_to(folder / "short.wav", VOICES["sam"], "Hello there.")]
    return files


@pytest.fixture(autouse=True)
def models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XIAOZHI_MODELS__DIR", str(models_dir()))


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def db_path() -> Path:
    return load_config().db_path


@pytest.mark.models
def test_enroll_list_test_and_remove_voices(wavs: dict[str, list[Path]]) -> None:
    status, _, err = run("voice", "enroll", "sam", *wavs["sam"])
    assert status == 0, err
    assert "enrolled Sam from 5 clip(s)" in err
    status, out, err = run("voice", "enroll", "Ana", *wavs["ana"][:3], "--json")
    assert status == 0, err
    assert json.loads(out)["clips"] == 3 and json.loads(out)["closest"]["name"] == "Sam"
    status, _, err = run("voice", "enroll", "SAM", *wavs["sam"][:3])
    assert status == 1 and "Sam is enrolled already" in err and "--replace" in err

    status, out, _ = run("voice", "list", "--json")
    listed = {v["name"]: v for v in json.loads(out)}
    assert status == 0 and sorted(listed) == ["Ana", "Sam"]
    assert listed["Sam"]["clips"] == 5 and listed["Sam"]["current"] and listed["Sam"]["source"] == "cli"

    for who, expected in (("sam", "Sam"), ("ana", "Ana"), ("stranger", None)):
        status, out, err = run("voice", "test", wavs[f"{who}-test"][0], "--json")
        assert status == 0, err
        result = json.loads(out)
        assert result["speaker"] == expected and {r["name"] for r in result["ranking"]} == {"Sam", "Ana"}
        scores = [r["score"] for r in result["ranking"]]
        assert scores == sorted(scores, reverse=True)
    status, _, err = run("voice", "test", wavs["short"][0])
    assert status == 1 and "speech" in err

    status, _, err = run("voice", "rm", "sam")
    assert status == 0 and "removed the voiceprint of Sam" in err
    status, _, err = run("voice", "rm", "sam")
    assert status == 1 and "no voice enrolled as 'sam' (enrolled: Ana)" in err


@pytest.mark.models
def test_enroll_refuses_unusable_audio_with_the_reason(wavs: dict[str, list[Path]], tmp_path: Path) -> None:
    status, _, err = run("voice", "enroll", "Sam", *wavs["sam"][:2])
    assert status == 1 and "2 clips given; enrolling needs at least 3" in err
    status, _, err = run("voice", "enroll", "Sam", *wavs["sam"][:2], wavs["short"][0])
    assert status == 1 and "short.wav: only" in err and "need at least 3 s" in err
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEjunk")
    status, _, err = run("voice", "enroll", "Sam", *wavs["sam"][:2], broken)
    assert status == 1 and "broken.wav" in err and "Traceback" not in err
    status, out, _ = run("voice", "list", "--json")
    assert json.loads(out) == []


def test_voices_of_another_model_are_listed_as_stale() -> None:
    store = MemoryStore.open(db_path())
    store.save_voiceprint("Old", np.ones((3, 256), np.float32), model_id="another", preprocessing="x", source="cli")
    store.close()
    status, out, _ = run("voice", "list")
    assert status == 0 and "Old" in out and "stale" in out
    status, out, _ = run("voice", "list", "--json")
    assert json.loads(out)[0]["current"] is False


@pytest.fixture
def remembered() -> dict[str, int]:
    store = MemoryStore.open(db_path())
    conversation = store.start_conversation(DEVICE, "sess-1")
    store.add_turn(conversation, TurnRecord(1, "My dog is called Max.", "Nice!", "Sam", "voice", "ok"))
    store.add_turn(conversation, TurnRecord(2, "I live in Paris.", "Lovely.", None, "voice", "ok"))
    (dog,) = store.apply_facts(Owner("speaker", "Sam"), [FactChange("The user's dog is called Max.")], conversation, 9)
    (tea,) = store.apply_facts(Owner("speaker", "Sam"), [FactChange("The user likes tea.")], conversation, 9)
    (paris,) = store.apply_facts(Owner("device", DEVICE), [FactChange("The user lives in Paris.")], conversation, 9)
    store.close()
    return {"dog": dog, "tea": tea, "paris": paris, "conversation": conversation}


def facts(*args: str) -> list[str]:
    status, out, err = run("memory", "show", "--json", *args)
    assert status == 0, err
    return [f["fact"] for f in json.loads(out)["memories"]]


def test_memory_show(remembered: dict[str, int]) -> None:
    assert facts() == ["The user lives in Paris.", "The user likes tea.", "The user's dog is called Max."]
    assert facts("--speaker", "sam") == ["The user likes tea.", "The user's dog is called Max."]
    assert facts("--device", "AA-BB-CC-00-00-01") == ["The user lives in Paris."]
    status, out, err = run("memory", "show")
    assert status == 0 and "tea" in out and "1 conversation(s), 4 message(s), 3 fact(s)" in err
    status, _, err = run("memory", "show", "--speaker", "Nobody")
    assert status == 0 and "Nothing remembered about speaker Nobody" in err


def test_memory_forget_a_fact_a_speaker_a_device_everything(remembered: dict[str, int]) -> None:
    status, _, err = run("memory", "forget", str(remembered["tea"]))
    assert status == 1 and "--yes" in err  # no terminal to confirm on
    assert len(facts()) == 3
    status, _, err = run("memory", "forget", str(remembered["tea"]), "--yes")
    assert status == 0 and facts("--speaker", "Sam") == ["The user's dog is called Max."]
    status, _, err = run("memory", "forget", "--speaker", "Sam", "--yes")
    assert status == 0 and "forgot 1 fact(s) and 2 message(s) of Sam" in err
    assert facts() == ["The user lives in Paris."]
    status, _, err = run("memory", "forget", "--device", DEVICE, "--yes")
    assert status == 0 and "forgot 1 fact(s) and 1 conversation(s)" in err
    status, out, _ = run("memory", "export")
    assert json.loads(out) == {"voiceprints": [], "memories": [], "conversations": []}


def test_memory_forget_all_and_bad_requests(remembered: dict[str, int]) -> None:
    for args in ([], ["1", "--all"], ["--speaker", "Sam", "--device", DEVICE]):
        status, _, err = run("memory", "forget", *args, "--yes")
        assert status == 1 and "say what to forget" in err
    status, _, err = run("memory", "forget", "999", "--yes")
    assert status == 1 and "no fact with id 999" in err
    status, _, err = run("memory", "forget", "--all", "--yes")
    assert status == 0 and "forgot 3 fact(s) and 1 conversation(s)" in err
    assert facts() == []


def test_memory_export(remembered: dict[str, int], tmp_path: Path) -> None:
    status, out, _ = run("memory", "export")
    data = json.loads(out)
    assert status == 0 and len(data["memories"]) == 3
    (conversation,) = data["conversations"]
    assert [m["speaker"] for m in conversation["messages"] if m["role"] == "user"] == ["Sam", None]
    target = tmp_path / "memory.json"
    status, _, err = run("memory", "export", "--out", target)
    assert status == 0 and "3 fact(s), 1 conversation(s)" in err
    assert json.loads(target.read_text()) == data
