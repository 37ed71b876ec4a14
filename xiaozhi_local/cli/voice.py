"""`xiaozhi voice`: enroll, list, remove and test voiceprints (who is speaking).

The commands open the shared database directly, so they work while `xiaozhi serve` runs: the server
picks up an enrolled or removed voice on the next utterance.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from ..audio.wav import read_wav_16k
from ..errors import VoiceprintError, XiaozhiError
from ..memory.voiceprints import MIN_IDENTIFY_SPEECH_S, PREPROCESSING, VoiceprintService, clean_name
from ..pipeline.loader import load_speaker_encoder
from ..speaker.checks import trim_silence
from ..speaker.identify import centroid, identify
from ..store.memory import MemoryStore, Owner
from .common import JSON_OPTION, err, guarded, out, print_json, state

app = typer.Typer(help="Voiceprints: enroll people by their voice, list, remove, test who is speaking.",
                  no_args_is_help=True)

RECOMMENDED_CLIPS = 5
WAV_ARG = typer.Argument(..., help="WAV files (any rate; mono or stereo).", exists=True, dir_okay=False)


@contextmanager
def _store(ctx: typer.Context) -> Iterator[MemoryStore]:
    store = MemoryStore.open(state(ctx).config.db_path)
    try:
        yield store
    finally:
        store.close()


def _service(ctx: typer.Context, store: MemoryStore) -> VoiceprintService:
    config = state(ctx).config
    with err.status("loading the speaker model…"):
        encoder, model_id = load_speaker_encoder(config)
    voice = config.settings.voice
    return VoiceprintService(store, encoder, model_id=model_id, threshold=voice.threshold,
                             min_clips=voice.min_enroll_clips)


@app.command()
@guarded
def enroll(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The person's name, as the assistant should call them."),
    files: list[Path] = WAV_ARG,
    replace: bool = typer.Option(False, "--replace", help="NAME is enrolled already: replace that voiceprint."),
    add: bool = typer.Option(False, "--add", help="NAME is enrolled already: add these clips to it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Enroll a person's voice from recordings of them speaking alone.

    Each file needs 3 s of speech or more after silence is removed; at least [voice] min_enroll_clips files (default 3), 5 recommended. Too short, too quiet, clipped or two-voice recordings are refused with the reason.
    """  # noqa: E501
    if replace and add:
        raise XiaozhiError("give --replace or --add, not both")
    name = clean_name(name)
    with _store(ctx) as store:
        existing = store.voiceprint(name)
        if existing is not None and not (replace or add):
            raise VoiceprintError(f"{existing.name} is enrolled already ({len(existing.embeddings)} clips); add "
                                  "--replace to enroll again from these files, or --add to add them")
        clips = [(path.name, read_wav_16k(path)) for path in files]
        service = _service(ctx, store)
        with err.status(f"checking and embedding {len(clips)} clip(s)…"):
            saved = service.enroll(name, clips, source="cli", keep_previous=add)
        others = {n: e for n, e in service.gallery().items() if n.casefold() != saved.name.casefold()}
        close = identify(centroid(saved.embeddings), others, threshold=service.threshold) if others else None
        if as_json:
            print_json({**saved.to_dict(), "closest": None if close is None or not close.ranking else
                        {"name": close.ranking[0][0], "score": round(close.ranking[0][1], 3)}})
            return
        err.print(f"[bold green]enrolled[/] {saved.name} from {len(clips)} clip(s) "
                  f"({len(saved.embeddings)} stored)", highlight=False)
        if len(saved.embeddings) < RECOMMENDED_CLIPS:
            err.print(f"  tip: {RECOMMENDED_CLIPS} clips identify noticeably better than 3 "
                      f"(`xiaozhi voice enroll {saved.name} --add MORE.wav`)", highlight=False)
        if close is not None and close.name is not None:
            err.print(f"[yellow]  warning:[/] {saved.name}'s voice is close to {close.name}'s (similarity "
                      f"{close.score:.2f} ≥ {service.threshold:.2f}); they may be confused", highlight=False)


@app.command("list")
@guarded
def list_voices(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List enrolled voices: clips, speaker model, when and how they were enrolled."""
    model_id = state(ctx).config.settings.models.speaker
    with _store(ctx) as store:
        voiceprints = store.voiceprints()
    rows = [{**v.to_dict(), "current": v.model_id == model_id and v.preprocessing == PREPROCESSING}
            for v in voiceprints]
    if as_json:
        print_json(rows)
        return
    if not rows:
        err.print("No voices enrolled. `xiaozhi voice enroll NAME a.wav b.wav c.wav`, or say \"remember my voice, "
                  "I am NAME\" to the assistant after a few sentences.", highlight=False)
        return
    table = Table()
    for column in ("name", "clips", "model", "enrolled", "via", "status"):
        table.add_column(column)
    for row in rows:
        status = "ok" if row["current"] else "[yellow]stale: enroll again[/]"
        table.add_row(str(row["name"]), str(row["clips"]), str(row["model_id"]),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(float(row["updated_at"]))), str(row["source"]),
                      status)
    out.print(table)


@app.command("rm")
@guarded
def remove(ctx: typer.Context, name: str = typer.Argument(..., help="The enrolled name (any case).")) -> None:
    """Remove a voiceprint. What the assistant remembers about that person stays until `memory forget`."""
    with _store(ctx) as store:
        existing = store.voiceprint(name)
        if existing is None or not store.remove_voiceprint(name):
            known = ", ".join(v.name for v in store.voiceprints()) or "none"
            raise VoiceprintError(f"no voice enrolled as {name!r} (enrolled: {known})")
        facts = len(store.facts(Owner("speaker", existing.name)))
    note = (f"; {facts} remembered fact(s) about them are kept (`xiaozhi memory forget --speaker "
            f"{existing.name}` removes them)" if facts else "")
    err.print(f"removed the voiceprint of {existing.name}{note}", highlight=False)


@app.command()
@guarded
def test(ctx: typer.Context, file: Path = typer.Argument(..., help="A WAV file of someone speaking.", exists=True,
                                                         dir_okay=False),
         as_json: bool = JSON_OPTION) -> None:
    """Who is speaking in FILE? Prints every enrolled voice with its similarity, best first."""
    with _store(ctx) as store:
        service = _service(ctx, store)
        gallery = service.gallery()
        if not gallery:
            raise VoiceprintError("no voices enrolled (or only stale ones): enroll someone first with "
                                  "`xiaozhi voice enroll NAME FILE.wav…`")
        speech = trim_silence(read_wav_16k(file))
        seconds = len(speech) / 16000
        if seconds < MIN_IDENTIFY_SPEECH_S:
            raise XiaozhiError(f"{file.name}: only {seconds:.1f} s of speech; the assistant does not judge less "
                               f"than {MIN_IDENTIFY_SPEECH_S:.0f} s")
        match = identify(service.encoder.embed(speech), gallery, service.threshold)
    if as_json:
        print_json({"file": str(file), "speech_s": round(seconds, 2), "threshold": service.threshold,
                    "speaker": match.name, "ranking": [{"name": n, "score": round(s, 4)} for n, s in match.ranking]})
        return
    table = Table(title=f"{file.name}: {seconds:.1f} s of speech; threshold {service.threshold:.2f}")
    table.add_column("name")
    table.add_column("similarity", justify="right")
    for n, s in match.ranking:
        table.add_row(n, f"{s:.3f}", style="bold green" if n == match.name else None)
    out.print(table)
    verdict = f"[bold]{match.name}[/]" if match.name else "[yellow]unknown[/] (no score reaches the threshold)"
    err.print(f"speaker: {verdict}", highlight=False)
