"""`xiaozhi device`: pair, list, revoke, rename and forget devices (:mod:`.device_admin`), and
try a server with a simulated device."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from ..errors import XiaozhiError
from ..protocol.types import ListenMode
from ..sim.discover import discover_server
from ..sim.identity import normalize_mac
from ..sim.report import SessionResult, aggregate, print_aggregate, print_summary, session_to_dict
from ..sim.runner import SessionOptions, run_devices
from . import device_admin
from .common import JSON_OPTION, err, guarded, out, print_json

app = typer.Typer(
    help="Xiaozhi devices: pair, list, revoke, rename, forget; simulate one to try a server without hardware.",
    no_args_is_help=True,
)


@app.callback()
def device() -> None:
    """Xiaozhi devices: pair, list, revoke, rename, forget; simulate one to try a server without hardware."""


app.command("pair")(device_admin.pair)
app.command("list")(device_admin.list_devices)
app.command("revoke")(device_admin.revoke)
app.command("rename")(device_admin.rename)
app.command("forget")(device_admin.forget)


EXIT_PAIRING = 3
"""Exit code when the server wants the device paired first (`xiaozhi device pair <code>`)."""


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False)


async def _simulate(server: str | None, discover: bool, count: int, mac: str | None,
                    options: SessionOptions, verbose: bool) -> list[SessionResult]:  # fmt: skip
    if discover:
        found = await discover_server()
        _say(f"found {found.name} at {found.host}:{found.port}; OTA URL {found.ota_url}")
        server = found.ota_url
    assert server is not None
    return await run_devices(server, count, options, mac=mac, log=_say if verbose else None)


@app.command()
@guarded
def simulate(
    server: str = typer.Option(
        None,
        "--server",
        help="The OTA URL, e.g. http://127.0.0.1:8003/xiaozhi/ota/ (a ws:// URL connects directly, skipping OTA).",
    ),
    discover: bool = typer.Option(False, "--discover", help="Find the server by mDNS (_xiaozhi._tcp) instead."),
    wav: Path = typer.Option(
        None, "--wav", help="Speech to send: any WAV file (resampled to 16 kHz mono).", exists=True, dir_okay=False
    ),
    text: str = typer.Option(
        None, "--text", help="Text sent as `listen detect` (a wake word, or a typed question when there is no --wav)."
    ),
    protocol_version: int = typer.Option(
        None, "--protocol-version", min=1, max=3, help="Binary frame version 1|2|3 (default: the OTA reply's, else 1)."
    ),
    mode: ListenMode = typer.Option(
        ListenMode.AUTO,
        "--mode",
        case_sensitive=False,
        help="auto: server VAD; manual: push-to-talk; realtime: full duplex.",
    ),
    reply_out: Path = typer.Option(
        None, "--out", help="Write the reply audio the device played to this WAV.", dir_okay=False
    ),
    as_json: bool = JSON_OPTION,
    device_id: str = typer.Option(
        None,
        "--device-id",
        help="MAC address (default: a random locally administered one). With --count it names the first device.",
    ),
    count: int = typer.Option(1, "--count", min=1, help="Simulate N devices at once (distinct MACs)."),
    query_auth: bool = typer.Option(
        False,
        "--query-auth",
        help="Pass device-id/client-id/authorization as URL "
        "query parameters like the browser test page, not as headers.",
    ),
    mcp_padding: int = typer.Option(
        0, "--mcp-padding", min=0, help="Add N ~700-byte MCP tools (12+ make tools/list span several 8000-byte pages)."
    ),
    wait_for_pairing: bool = typer.Option(
        False,
        "--wait-for-pairing",
        help="If the server shows an activation code, keep polling /activate like a real device until paired.",
    ),
    timeout: float = typer.Option(
        60.0, "--timeout", min=0.1, help="Seconds to wait for each reply (end of speech → tts stop)."
    ),
    turns: int = typer.Option(1, "--turns", min=1, help="Conversation turns (the same speech each turn)."),
    abort_after: float = typer.Option(
        None,
        "--abort-after",
        min=0.0,
        help="Press the button (send abort) this many seconds after the reply audio starts.",
    ),
    barge_in_after: float = typer.Option(
        None,
        "--barge-in-after",
        min=0.0,
        help="Realtime mode: say the --wav speech again this many seconds after the reply audio starts, "
        "talking over the reply; the server should stop it (tts stop) and answer the new utterance.",
    ),
) -> None:
    """Run a simulated stock device against a server: OTA, connect, speak, print what it heard.

    It behaves like stock firmware: OTA and activation, hello, Opus 16 kHz 60 ms audio in real time, MCP answers.

    It prints the transcript (stt), the reply text and the latencies from the end of your speech.

    Exit codes: 0 ok, 1 error, 3 the server wants the device paired first (`xiaozhi device pair <code>`).
    """
    if bool(server) == discover:
        raise XiaozhiError("give either --server URL or --discover")
    if wav is None and text is None:
        raise XiaozhiError("give --wav FILE (speech to send) and/or --text TEXT")
    mac = normalize_mac(device_id) if device_id else None
    options = SessionOptions(
        wav=wav, text=text, mode=mode, turns=turns, protocol_version=protocol_version,
        query_auth=query_auth, mcp_padding=mcp_padding, reply_timeout_s=timeout,
        abort_after_s=abort_after, barge_in_after_s=barge_in_after, out=reply_out,
        wait_for_pairing=wait_for_pairing,
    )  # fmt: skip
    try:
        results = asyncio.run(_simulate(server, discover, count, mac, options, verbose=count == 1))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    _report(results, as_json)


def _report(results: list[SessionResult], as_json: bool) -> None:
    failed = [r for r in results if not r.ok]
    if len(results) == 1:
        result = results[0]
        if as_json:
            print_json(session_to_dict(result))
        else:
            print_summary(out, result)
    else:
        summary = aggregate(results)
        if as_json:
            print_json({"summary": summary, "devices": [session_to_dict(r) for r in results]})
        else:
            print_aggregate(out, summary)
    if not failed:
        return
    if len(results) == 1:
        err.print(f"[bold red]error:[/] {failed[0].error}", highlight=False)
    if all(r.error_kind == "PairingRequiredError" for r in failed):
        raise typer.Exit(EXIT_PAIRING)
    raise typer.Exit(1)
