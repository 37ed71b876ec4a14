"""Memory distillation examples and the cost of speaker identification, with the real models.

    python bench/memory_distill.py [--llm PATH.gguf]… [--whisper DIR] [--encoder pretrained.pt] [--out bench/results]

1. **Distillation.** Scripted sessions of two people (what each said, as the assistant stores it) go through
   the real path: turns stored in a fresh SQLite database, then ``MemoryHooks.session_end``, which asks the
   LLM for facts, validates them and merges them into what is stored (replacing updated facts). For every
   session the report shows what was said, the statements that reached the LLM, its raw answer and the
   speaker's facts afterwards. Each ``--llm`` is run separately (default: the default Qwen2.5-Coder-0.5B and
   the test set's SmolLM2-135M).
2. **Identification overhead.** Speaker identification runs alongside ASR in a worker thread; this measures
   ASR alone and ASR with identification at the same time on a few espeak-ng utterances (median wall time).

Writes ``memory.json`` and ``memory.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.memory.voices import ENROLL_TEXTS, TEST_TEXTS, VOICES, speak  # noqa: E402
from xiaozhi_local.config import MemorySettings  # noqa: E402
from xiaozhi_local.engines.base import ChatMessage, GenerationOptions  # noqa: E402
from xiaozhi_local.engines.llm_local import LlamaCppLlm  # noqa: E402
from xiaozhi_local.memory.hooks import MemoryHooks  # noqa: E402
from xiaozhi_local.memory.voiceprints import VoiceprintService  # noqa: E402
from xiaozhi_local.pipeline.conversation import SessionInfo  # noqa: E402
from xiaozhi_local.pipeline.timing import TurnTimings  # noqa: E402
from xiaozhi_local.pipeline.workers import run_blocking  # noqa: E402
from xiaozhi_local.speaker.encoder import SpeakerEncoder  # noqa: E402
from xiaozhi_local.store.memory import MemoryStore, Owner  # noqa: E402

SERVE_MODELS = Path("/tmp/serve-home/models")
TEST_MODELS = Path.home() / ".cache/xiaozhi-local/test-home/models"
DEFAULT_LLMS = [SERVE_MODELS / "qwen2.5-coder-0.5b-q4km/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                TEST_MODELS / "smollm2-135m-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"]
DEVICE = "aa:bb:cc:00:00:01"

SESSIONS: list[tuple[str | None, list[str]]] = [
    ("Sam", ["Hi there!", "My dog is called Max.", "What should I feed him?"]),
    ("Sam", ["I love green tea, especially in the morning.", "Set a timer for five minutes."]),
    ("Sam", ["My name is Sam and I work as a nurse.", "I have two daughters."]),
    ("Sam", ["I live in Paris, near the river."]),
    ("Sam", ["Good news: I moved to Berlin last month."]),
    ("Sam", ["Actually I don't drink green tea any more, only coffee."]),
    ("Ana", ["I'm allergic to peanuts.", "Tell me a joke.", "We have two cats called Tom and Jerry."]),
    ("Ana", ["What is two plus two?", "How far away is the moon?"]),
    ("Ana", ["My favourite band is Radiohead and I play the guitar every evening."]),
    (None, ["Remember that the wifi password is on the fridge.", "My grandmother visits us every Sunday."]),
    ("Ana", ["我的女儿叫小红。"]),
]
"""(speaker — None for an unknown voice, whose facts belong to the device —, what they said)."""


class TappedLlm:
    """The real LLM; keeps the text of every answer (the raw distillation output)."""

    def __init__(self, llm: LlamaCppLlm):
        self.llm = llm
        self.context_size = llm.context_size
        self.answers: list[str] = []

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def stream_chat(self, messages: Sequence[ChatMessage], options: GenerationOptions,
                    stop: threading.Event) -> Iterator[str]:
        pieces: list[str] = []
        for piece in self.llm.stream_chat(messages, options, stop):
            pieces.append(piece)
            yield piece
        self.answers.append("".join(pieces))


async def distill_sessions(llm_path: Path) -> dict[str, Any]:
    llm = TappedLlm(LlamaCppLlm(llm_path, context_size=2048, threads=0, seed=0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore.open(Path(tmp) / "memory.db")
        hooks = MemoryHooks(store, llm, MemorySettings())  # type: ignore[arg-type]
        for n, (speaker, texts) in enumerate(SESSIONS, start=1):
            info = SessionInfo(session_id=f"bench-{n}", device_id=DEVICE, client_id=None, address="127.0.0.1",
                               protocol_version=1)
            for turn, text in enumerate(texts, start=1):
                await hooks.turn_done(info, TurnTimings(info.session_id, DEVICE, turn, source="voice",
                                                        transcript=text, reply="(reply)"), speaker)
            answers = len(llm.answers)
            started = time.perf_counter()
            await hooks.session_end(info, ())
            owner = Owner("speaker", speaker) if speaker else Owner("device", DEVICE)
            rows.append({"speaker": speaker or f"unknown voice (device {DEVICE})", "said": texts,
                         "llm_answers": llm.answers[answers:], "seconds": round(time.perf_counter() - started, 1),
                         "facts_after": [f.fact for f in store.facts(owner)]})
        final = {str(owner): [f.fact for f in store.facts(owner)] for owner, _ in store.owners()}
        store.close()
    llm.llm.close()
    return {"llm": llm_path.name, "sessions": rows, "final": final}


async def identification_overhead(whisper: Path, encoder_path: Path, repeats: int = 5) -> dict[str, Any]:
    from xiaozhi_local.engines.asr import WhisperAsr

    asr = WhisperAsr(whisper, threads=0, language="en")
    encoder = SpeakerEncoder.load(encoder_path)
    with tempfile.TemporaryDirectory() as tmp:
        service = VoiceprintService(MemoryStore.open(Path(tmp) / "v.db"), encoder, model_id="ge2e-resemblyzer")
        service.enroll("Sam", [(f"c{i}", speak(VOICES["sam"], t)) for i, t in enumerate(ENROLL_TEXTS)])
        service.enroll("Ana", [(f"c{i}", speak(VOICES["ana"], t)) for i, t in enumerate(ENROLL_TEXTS)])
        utterances = [np.concatenate([np.zeros(4000, np.int16), speak(VOICES[v], t), np.zeros(8000, np.int16)])
                      for v in ("sam", "ana", "stranger") for t in TEST_TEXTS]
        asr.transcribe(utterances[0], 16000, "en")  # warm up
        alone, together, encode = [], [], []
        for _ in range(repeats):
            for pcm in utterances:
                t0 = time.perf_counter()
                await run_blocking(asr.transcribe, pcm, 16000, "en")
                alone.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await asyncio.gather(run_blocking(asr.transcribe, pcm, 16000, "en"),
                                     run_blocking(service.identify, pcm))
                together.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                service.identify(pcm)
                encode.append(time.perf_counter() - t0)

    def ms(values: list[float]) -> float:
        return round(1000 * statistics.median(values), 1)

    return {"utterances": len(utterances), "repeats": repeats,
            "utterance_s": round(float(np.median([len(u) / 16000 for u in utterances])), 2),
            "asr_alone_ms": ms(alone), "asr_with_identification_ms": ms(together), "identify_alone_ms": ms(encode),
            "added_ms": round(ms(together) - ms(alone), 1)}


def render(results: dict[str, Any]) -> str:
    lines = ["# Memory: distillation examples and identification overhead", "",
             "Generated by `python bench/memory_distill.py`. Scripted sessions go through the real path "
             "(turns stored in SQLite → `MemoryHooks.session_end` → LLM → validation → merge); greedy decoding. "
             "\"LLM answer\" is the model's raw text, \"facts after\" what is stored for that speaker once the "
             "session is distilled (newest first). A session without a statement about the speaker never reaches "
             "the LLM.", ""]
    for run in results["distillation"]:
        lines += [f"## {run['llm']}", "", "| # | speaker | said | LLM answer | facts after | s |",
                  "|---|---|---|---|---|---|"]
        for i, row in enumerate(run["sessions"], start=1):
            said = "<br>".join(row["said"])
            answers = "<br>".join(a.replace("\n", "<br>") for a in row["llm_answers"]) or "(not asked)"
            facts = "<br>".join(row["facts_after"]) or "-"
            lines.append(f"| {i} | {row['speaker']} | {said} | {answers} | {facts} | {row['seconds']} |")
        lines += ["", "Stored at the end:", ""]
        for owner, facts in run["final"].items():
            lines.append(f"- {owner}: " + "; ".join(facts))
        lines.append("")
    overhead = results.get("identification")
    if overhead:
        lines += ["## Speaker identification alongside ASR", "",
                  f"{overhead['utterances']} espeak-ng utterances (median {overhead['utterance_s']} s) × "
                  f"{overhead['repeats']}, whisper-base on all cores, GE2E (onnxruntime, one thread); "
                  "median wall time:",
                  "", "| ASR alone | ASR + identification at once | identification alone | added to the turn |",
                  "|---|---|---|---|",
                  f"| {overhead['asr_alone_ms']} ms | {overhead['asr_with_identification_ms']} ms | "
                  f"{overhead['identify_alone_ms']} ms | {overhead['added_ms']} ms |", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", type=Path, action="append", help="GGUF chat model (repeatable)")
    parser.add_argument("--whisper", type=Path, default=SERVE_MODELS / "whisper-base")
    parser.add_argument("--encoder", type=Path, default=SERVE_MODELS / "ge2e-resemblyzer/pretrained.pt")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    results: dict[str, Any] = {"distillation": []}
    for path in args.llm or DEFAULT_LLMS:
        print(f"distilling with {path.name} …", file=sys.stderr)
        results["distillation"].append(asyncio.run(distill_sessions(path)))
    print("measuring identification overhead …", file=sys.stderr)
    results["identification"] = asyncio.run(identification_overhead(args.whisper, args.encoder))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (args.out / "memory.md").write_text(render(results))
    print(f"wrote {args.out / 'memory.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
