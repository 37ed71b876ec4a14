"""Every typed exception of xiaozhi-local, in one place.

Each carries a message a user can act on. Network-facing errors also carry what the
peer should receive (a WebSocket close code or an HTTP status).
"""

from __future__ import annotations


class XiaozhiError(Exception):
    """Base class: the message is meant for a human."""


class ConfigError(XiaozhiError):
    """The configuration file or environment is wrong.

    `key` is the dotted setting name, `source` the file or variable, `line` the 1-based
    line in the file when known.
    """

    def __init__(self, message: str, *, key: str = "", source: str = "", line: int | None = None):
        self.key = key
        self.source = source
        self.line = line
        where = source + (f":{line}" if line else "")
        prefix = ": ".join(p for p in (where, key) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ModelError(XiaozhiError):
    """A model could not be found, fetched, verified or loaded."""


class UnknownModelError(ModelError):
    """An id that the catalog does not have; `suggestions` lists close matches."""

    def __init__(self, model_id: str, suggestions: list[str]):
        self.model_id = model_id
        self.suggestions = suggestions
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model id {model_id!r}.{hint} (see `xiaozhi models list`)")


class UnsafeCheckpointError(ModelError):
    """A model checkpoint we refuse or cannot read (a torch ``.pt`` with unexpected pickle globals,
    a bad layout or out-of-bounds tensors): loading it could run code or read garbage."""


class ChecksumError(ModelError):
    """Bytes fetched from a source do not match the catalog's sha256."""


class FetchError(ModelError):
    """A source could not deliver (network, HTTP status, missing member)."""


class AllSourcesFailedError(ModelError):
    """Every source of a model failed; the message names each one and why."""

    def __init__(self, model_id: str, failures: list[tuple[str, str]]):
        self.model_id = model_id
        self.failures = failures
        lines = "\n".join(f"  - {src}: {why}" for src, why in failures)
        super().__init__(f"could not pull {model_id!r}; every source failed:\n{lines}")


class ProtocolError(XiaozhiError):
    """The peer broke the Xiaozhi protocol.

    `close_code` is the WebSocket close code to answer with (RFC 6455 §7.4); `reason` is the
    short close reason (at most 123 bytes of UTF-8 on the wire).
    """

    def __init__(self, reason: str, *, close_code: int = 1008):
        self.close_code = close_code
        self.reason = reason
        super().__init__(reason)


class AudioError(XiaozhiError):
    """Audio could not be decoded, encoded or read."""


class ActivationBodyError(XiaozhiError):
    """A ``POST …/activate`` body we cannot use (protocol.md §1.6); answer HTTP 400.

    `http_status` is the status to reply with; the message says what was wrong.
    """

    http_status = 400


class McpToolError(XiaozhiError):
    """A device MCP tool call failed (protocol.md §4.4, §4.7).

    Raised for a JSON-RPC error reply (device errors carry only a message), an
    ``isError: true`` result, or a result we cannot read. The message is the device's text,
    suitable for telling the user.
    """

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class SimulatorError(XiaozhiError):
    """The simulated device could not complete a session (`xiaozhi device simulate`).

    The message says what the server did (or failed to do) and, where possible, what a stock
    device would have done about it (protocol.md §1, §2).
    """


class PairingRequiredError(SimulatorError):
    """The server wants the simulated device paired first (protocol.md §1.6).

    `code` is the activation code the OTA reply carried, for `xiaozhi device pair <code>`.
    """

    def __init__(self, message: str, *, code: str | None):
        self.code = code
        super().__init__(message)


class ChannelClosedError(SimulatorError):
    """The server closed the device WebSocket while the simulator still needed it (§2.8).

    `close_code` and `close_reason` are what the server sent (1006 and "" when the connection
    simply dropped).
    """

    def __init__(self, message: str, *, close_code: int | None, close_reason: str):
        self.close_code = close_code
        self.close_reason = close_reason
        super().__init__(message)


class EngineError(XiaozhiError):
    """A model engine failed to load or to run (VAD, ASR, LLM, TTS, speaker)."""


class ModelMissingError(EngineError):
    """A model the configuration asks for is not installed (or fails its checksum)."""

    def __init__(self, model_id: str, detail: str):
        super().__init__(f"model {model_id!r} {detail}; install it with `xiaozhi models pull {model_id}`")
        self.model_id = model_id


class LlmError(EngineError):
    """The language model failed to produce a reply."""


class TtsError(EngineError):
    """The voice failed to synthesize."""


class EnrollmentError(XiaozhiError):
    """Audio that cannot be used to enroll a voice; the message says why and what to do.

    `label` names the clip (a file name, "utterance 2" …); `problem` is a
    :class:`xiaozhi_local.speaker.checks.Problem` value (too_quiet, clipped, too_short,
    multi_speaker, inconsistent).
    """

    def __init__(self, label: str, problem: str, message: str):
        self.label = label
        self.problem = problem
        super().__init__(f"{label}: {message}" if label else message)


class VoiceprintError(XiaozhiError):
    """A voiceprint operation that cannot be done (unknown name, a name taken by another voice …)."""
