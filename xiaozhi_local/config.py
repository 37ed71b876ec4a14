"""One typed settings object, from a TOML file and ``XIAOZHI_*`` environment variables.

Precedence (later wins): built-in defaults → config file → environment. A setting
``[section] key`` is overridden by ``XIAOZHI_SECTION__KEY`` (double underscore between
section and key); the value is read as a TOML value when it parses as one (``8080``,
``true``, ``["a", "b"]``) and as a plain string otherwise.

Unknown keys and wrong types are errors that name the key, the file and the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .paths import BaseDirs, base_dirs

ENV_PREFIX = "XIAOZHI_"
# Environment variables that are not settings.
RESERVED_ENV = {"XIAOZHI_HOME", "XIAOZHI_CONFIG"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ModelsSettings(_Section):
    """Which catalog models the server uses, and where they are stored."""

    dir: str = Field("", description="Model store; empty = <data dir>/models")
    catalog: str = Field("", description="Extra catalog file merged over the built-in one")
    vad: str = "silero-vad"
    asr: str = "whisper-base"
    tts: str = "piper-en-us-joe-medium"
    llm: str = "qwen2.5-coder-0.5b-q4km"
    speaker: str = "ge2e-resemblyzer"


class ServerSettings(_Section):
    """The device-facing server: ports, the address devices use, limits."""

    host: str = Field("0.0.0.0", description="Address to listen on (0.0.0.0 = every interface)")
    http_port: int = Field(8003, ge=0, le=65535, description="OTA/activation/health HTTP port (0 = any free port)")
    ws_port: int = Field(8000, ge=0, le=65535, description="Device WebSocket port (0 = any free port)")
    advertise_host: str = Field("", description="LAN address devices use to reach this box; empty = detect")
    mdns: bool = Field(True, description="Announce _xiaozhi._tcp on the LAN (mDNS)")
    mdns_interfaces: list[str] = Field(default_factory=list,
                                       description="Interface addresses for mDNS; empty = all")
    protocol_version: int = Field(0, ge=0, le=3,
                                  description="Binary protocol to ask devices for in OTA (1-3); 0 = theirs")
    timezone_offset_min: int | None = Field(None, ge=-720, le=840,
                                            description="Sent to devices; empty = this machine's offset")
    idle_timeout_s: float = Field(120.0, gt=0, description="Close a session silent for this long")
    hello_timeout_s: float = Field(10.0, gt=0, description="Wait this long for a device's hello")
    max_frame_bytes: int = Field(65536, ge=1024, description="Largest WebSocket frame accepted")
    max_body_bytes: int = Field(65536, ge=1024, description="Largest HTTP request body accepted")
    max_sessions: int = Field(32, ge=1, description="Concurrent device sessions")


class PipelineSettings(_Section):
    """The voice pipeline: how turns end, how the assistant talks, which LLM engine answers."""

    language: str = Field("auto", description="Speech recognition language (en, zh, …); auto = detect")
    system_prompt: str = Field(
        "You are Xiaozhi, a friendly voice assistant running on a small computer in the user's home. "
        "Answer in one to three short spoken sentences, in the language the user speaks. "
        "No lists, no markdown, no emoji.",
        description="The assistant's instructions (the start of every prompt)")
    llm_engine: Literal["local", "openai"] = Field(
        "local", description="local = llama.cpp on [models] llm; openai = an OpenAI-compatible endpoint")
    llm_threads: int = Field(0, ge=0, description="CPU threads for the local LLM; 0 = all cores")
    llm_context: int = Field(2048, ge=256, description="Context window of the local LLM (tokens)")
    max_reply_tokens: int = Field(160, ge=8, description="Longest reply, in tokens")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature; 0 = deterministic")
    seed: int = Field(-1, description="Sampling seed; -1 = random")
    history_tokens: int = Field(1024, ge=0, description="Dialogue kept in the prompt, in tokens (oldest out)")
    openai_url: str = Field("http://127.0.0.1:8080/v1",
                            description="Base URL of the OpenAI-compatible endpoint (llm_engine = openai)")
    openai_model: str = Field("", description="Model name sent to the endpoint; empty = the server's default")
    openai_api_key_env: str = Field("", description="Environment variable holding the endpoint's API key")
    asr_threads: int = Field(0, ge=0, description="CPU threads for speech recognition; 0 = all cores")
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Speech probability that counts as speech")
    end_silence_ms: int = Field(500, ge=100, description="Silence that ends an utterance (auto/realtime)")
    speculate_ms: int = Field(160, ge=0, description="After this much silence, start answering while waiting "
                                                     "for end_silence_ms (hidden until confirmed); 0 = off")
    min_speech_ms: int = Field(250, ge=0, description="Shorter utterances are ignored (coughs, clicks)")
    max_utterance_s: float = Field(30.0, gt=1, description="Utterances are cut at this length")
    barge_in_ms: int = Field(400, ge=0, description="Realtime mode: speech this long interrupts a reply")
    wake_words: list[str] = Field(default_factory=lambda: ["你好小智", "小智", "hi esp", "hey xiaozhi",
                                                           "hi xiaozhi", "xiaozhi"],
                                  description="listen detect texts that are wake words (case-insensitive)")
    greeting: str = Field("Hi! How can I help?", description="Spoken after a wake word")
    goodbye_words: list[str] = Field(default_factory=lambda: ["bye", "goodbye", "bye bye", "see you",
                                                              "再见", "拜拜"],
                                     description="Utterances that end the session")
    farewell: str = Field("Goodbye!", description="Spoken before the session ends")
    apology: str = Field("Sorry, something went wrong. Please try again.",
                         description="Spoken when the language model or the voice fails")
    turn_log_size: int = Field(200, ge=0, description="Recent turn timings kept for /turns and the bench")


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class PairingSettings(_Section):
    """Which devices may talk to the assistant (see the README's Security section)."""

    mode: Literal["paired", "open"] = Field(
        "paired", description="paired = only devices the owner approved (`xiaozhi device pair`); "
                              "open = admit any device on the LAN (trusted networks only)")
    code_ttl_s: float = Field(600.0, ge=10, description="A pairing code expires after this long (then a new one)")
    max_pending: int = Field(20, ge=1, description="Devices waiting for pairing at once; more are refused")
    max_pending_per_address: int = Field(4, ge=1, description="Devices waiting for pairing from one address")


class LimitsSettings(_Section):
    """Per-source-address request rates, so one LAN client cannot flood the server."""

    ota_per_minute: int = Field(30, ge=1, description="OTA checks per address per minute (then HTTP 429)")
    activate_per_minute: int = Field(60, ge=1, description="Activation polls per address per minute (then 429)")
    websocket_per_minute: int = Field(30, ge=1, description="WebSocket connects per address per minute (then 429)")
    sessions_per_address: int = Field(4, ge=1, description="Concurrent device sessions from one address")
    max_json_bytes: int = Field(32768, ge=1024, le=1048576,
                                description="Largest JSON text message accepted from a device")
    body_timeout_s: float = Field(10.0, gt=0, description="Time a client has to send an HTTP request body (then 408)")
    idle_http_s: float = Field(15.0, gt=0, description="Close an HTTP connection that sends no request for this long")
    exempt_loopback: bool = Field(True, description="No per-address limits for clients on this machine "
                                                    "(turn off behind a reverse proxy)")



class MemorySettings(_Section):
    """What the assistant keeps between sessions: conversations, and facts distilled from them by the LLM."""

    enabled: bool = Field(True, description="Store conversations and remember facts about speakers and devices")
    distill_every_turns: int = Field(6, ge=0, description="Also distill facts after this many turns, once the "
                                                          "session is idle (0 = only when a session ends)")
    distill_idle_s: float = Field(20.0, gt=0, description="Seconds without a turn before a mid-session "
                                                          "distillation may use the LLM")
    max_facts_per_owner: int = Field(30, ge=1, le=1000, description="Facts kept per speaker or device; the "
                                                                    "least recently confirmed go first")
    context_facts: int = Field(8, ge=0, le=100, description="Facts put into the system prompt each turn")
    keep_audio: bool = Field(False, description="Debugging only: keep each utterance as a WAV file next to the "
                                                "database (off by default: no audio is stored)")
    audio_retention_days: float = Field(7.0, gt=0, description="Kept utterance audio is deleted after this many days")


class VoiceSettings(_Section):
    """Voiceprints: who is speaking (the model is [models] speaker)."""

    enabled: bool = Field(True, description="Identify enrolled speakers by their voice on each utterance")
    threshold: float = Field(0.88, gt=0, lt=1, description="Similarity (cosine) needed to name a speaker; "
                                                           "lower it if known people go unrecognised")
    min_enroll_clips: int = Field(3, ge=1, le=20, description="Clips (each ≥ 3 s of speech) needed to enroll a "
                                                              "voice; 5 identify noticeably better")

class Settings(_Section):
    """Everything configurable. Sections map to TOML tables."""

    server: ServerSettings = ServerSettings()
    models: ModelsSettings = ModelsSettings()
    pipeline: PipelineSettings = PipelineSettings()
    log: LogSettings = LogSettings()
    pairing: PairingSettings = PairingSettings()
    limits: LimitsSettings = LimitsSettings()
    memory: MemorySettings = MemorySettings()
    voice: VoiceSettings = VoiceSettings()


@dataclass(frozen=True)
class AppConfig:
    """Settings plus the resolved locations they came from and point to."""

    settings: Settings
    dirs: BaseDirs
    config_file: Path
    config_file_exists: bool

    @property
    def data_dir(self) -> Path:
        return self.dirs.data_dir

    @property
    def models_dir(self) -> Path:
        custom = self.settings.models.dir.strip()
        return Path(custom).expanduser() if custom else self.dirs.data_dir / "models"

    @property
    def db_path(self) -> Path:
        return self.dirs.data_dir / "xiaozhi.db"

    @property
    def user_catalog(self) -> Path:
        """Optional catalog additions a user keeps next to the config file."""
        return self.dirs.config_dir / "models.toml"

    @property
    def catalog_files(self) -> list[Path]:
        """Catalog files merged over the built-in one, in order (``load_catalog(*these)``)."""
        files = [self.user_catalog]
        if self.settings.models.catalog.strip():
            files.append(Path(self.settings.models.catalog.strip()).expanduser())
        return files


def load_config(config_path: Path | None = None, env: Mapping[str, str] | None = None) -> AppConfig:
    """Load the effective configuration.

    ``config_path`` (the ``--config`` option) beats ``XIAOZHI_CONFIG``, which beats the
    default location. A missing file at the default location is fine (defaults apply);
    a missing file that was asked for explicitly is an error.
    """
    env = os.environ if env is None else env
    dirs = base_dirs(env)
    explicit = config_path or (Path(env["XIAOZHI_CONFIG"]) if env.get("XIAOZHI_CONFIG") else None)
    path = (explicit or dirs.config_file).expanduser()
    text = ""
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the config file: {exc}", source=str(path)) from exc
    elif explicit is not None:
        raise ConfigError("config file not found (create one with `xiaozhi config init`)", source=str(path))
    data = _parse_toml(text, path)
    env_data, env_sources = _env_overrides(env)
    merged = _deep_merge(data, env_data)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise _to_config_error(exc, text, path, env_sources) from None
    return AppConfig(settings=settings, dirs=dirs, config_file=path, config_file_exists=path.exists())


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError(f"not valid TOML: {exc}", source=str(path), line=line) from None


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Turn ``XIAOZHI_SECTION__KEY=value`` variables into a nested dict."""
    data: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV or "__" not in name:
            continue
        path = tuple(p.lower() for p in name[len(ENV_PREFIX):].split("__"))
        if any(not p for p in path):
            raise ConfigError("malformed variable name (use XIAOZHI_SECTION__KEY)", source=name)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError("conflicts with another variable", source=name)
        node[path[-1]] = _env_value(raw)
        sources[path] = name
    return data, sources


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _to_config_error(
    exc: ValidationError, text: str, path: Path, env_sources: dict[tuple[str, ...], str]
) -> ConfigError:
    problems: list[tuple[str, str, int | None, str]] = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc)
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if loc in env_sources:
            problems.append((key, env_sources[loc], None, message))
        else:
            problems.append((key, str(path), find_key_line(text, loc), message))
    key, source, line, message = problems[0]
    error = ConfigError(message, key=key, source=source, line=line)
    if len(problems) > 1:
        rest = "\n".join(
            f"{src}{f':{ln}' if ln else ''}: {k}: {msg}" for k, src, ln, msg in problems[1:]
        )
        error.args = (f"{error.args[0]}\n{rest}",)
    return error


_TABLE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("([^"]+)"|'([^']+)'|[A-Za-z0-9_-]+)\s*=""")


def find_key_line(text: str, loc: tuple[str, ...]) -> int | None:
    """Best-effort 1-based line of a dotted key in TOML text (for error messages)."""
    if not loc:
        return None
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        table_match = _TABLE.match(line)
        if table_match:
            table = tuple(p.strip().strip("\"'") for p in table_match.group(1).split("."))
            if table == loc:
                return number
            continue
        key_match = _KEY.match(line)
        if key_match:
            key = key_match.group(2) or key_match.group(3) or key_match.group(1)
            if (*table, key) == loc[: len(table) + 1] and len(table) < len(loc):
                return number
    return None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def render_toml(settings: Settings, *, with_help: bool = False) -> str:
    """The settings as TOML; with ``with_help``, each key gets its description as a comment."""
    lines: list[str] = []
    for section_name in Settings.model_fields:
        section = getattr(settings, section_name)
        if lines:
            lines.append("")
        lines.append(f"[{section_name}]")
        for key, field_info in type(section).model_fields.items():
            if with_help and field_info.description:
                lines.append(f"# {field_info.description}")
            value = getattr(section, key)
            # TOML has no null: an unset optional value is shown commented out.
            lines.append(f"# {key} = (unset)" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
