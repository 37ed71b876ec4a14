"""A chat model behind any OpenAI-compatible ``/v1/chat/completions`` endpoint, streamed over SSE.

Works with llama.cpp's server, llama-cpp-python's ``llama_cpp.server``, Ollama, vLLM and the
OpenAI API itself. Each request runs in a short-lived reader thread that owns the HTTP
response and hands text pieces to the caller through a queue, so a ``stop`` request ends
the stream at once even while the server is still thinking: the caller stops waiting and
the reader shuts the connection down (the server sees the disconnect and stops generating).

Token counts are estimated (see :meth:`OpenAiLlm.count_tokens`): the endpoint's tokenizer
is not available locally.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Final

import httpx

from xiaozhi_local.errors import LlmError

from .base import ChatMessage, GenerationOptions

__all__ = ["OpenAiLlm", "estimate_tokens"]

_POLL_S: Final = 0.05
_CONNECT_TIMEOUT_S: Final = 10.0
_ERROR_BODY_CHARS: Final = 500


def estimate_tokens(text: str) -> int:
    """A cheap token estimate: one token per CJK/kana/hangul character, one per 4 other characters.

    BPE tokenizers of current chat models average about 4 characters of English per token and
    about one token per Chinese character, so this is usually within ±25 %.
    """
    wide = sum(1 for c in text if "\u3000" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" or "\uf900" <= c <= "\ufaff")
    return wide + math.ceil((len(text) - wide) / 4)


class _Done:
    pass


_DONE: Final = _Done()


class OpenAiLlm:
    """An OpenAI-compatible endpoint. Implements :class:`~xiaozhi_local.engines.base.Llm`.

    Thread-safe: sessions stream concurrently (the server decides how to schedule them).
    ``model`` "" means the first model ``GET {base_url}/models`` lists, asked once.
    """

    context_size: int

    def __init__(self, base_url: str, model: str = "", api_key: str | None = None, timeout_s: float = 60,
                 context_size: int = 8192) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise LlmError(f"the LLM endpoint URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.context_size = context_size
        self._model = model
        self._model_lock = threading.Lock()
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S))
        self._client = httpx.Client(headers=headers, timeout=timeout)

    # ---- public ---------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """An estimate (:func:`estimate_tokens`); the endpoint's tokenizer is not available here."""
        return estimate_tokens(text)

    @property
    def model(self) -> str:
        """The model name sent with each request (asked from the server if it was not configured)."""
        with self._model_lock:
            if not self._model:
                self._model = self._first_model()
            return self._model

    def stream_chat(self, messages: Sequence[ChatMessage], options: GenerationOptions,
                    stop: threading.Event) -> Iterator[str]:
        if stop.is_set():
            return
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
        }
        if options.seed is not None:
            body["seed"] = options.seed
        request = _Request(self, body)
        reader = threading.Thread(target=request.run, name="openai-llm-stream", daemon=True)
        reader.start()
        try:
            while True:
                try:
                    item = request.items.get(timeout=_POLL_S)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                if isinstance(item, _Done):
                    return
                if isinstance(item, LlmError):
                    raise item
                yield item
                if stop.is_set():
                    return
        finally:
            request.cancel()

    def close(self) -> None:
        self._client.close()

    # ---- helpers --------------------------------------------------------------------------
    def _first_model(self) -> str:
        url = f"{self.base_url}/models"
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            raise LlmError(_transport_message(url, exc)) from exc
        if response.status_code >= 400:
            raise LlmError(_status_message(url, response.status_code, response.text))
        try:
            models = response.json()["data"]
            return str(models[0]["id"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmError(f"{url} lists no models ({response.text[:_ERROR_BODY_CHARS]!r}); "
                           "set [pipeline] openai_model") from exc


class _Request:
    """One streamed completion, read in its own thread; pieces, errors and the end go to ``items``."""

    def __init__(self, llm: OpenAiLlm, body: dict[str, Any]) -> None:
        self.llm = llm
        self.body = body
        self.items: queue.Queue[str | LlmError | _Done] = queue.Queue()
        self._cancelled = threading.Event()
        self._response: httpx.Response | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Stop reading: wake a blocked read by shutting the socket down."""
        self._cancelled.set()
        with self._lock:
            response = self._response
        if response is None:
            return
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        url = self.llm.url
        try:
            with self.llm._client.stream("POST", url, json=self.body) as response:
                with self._lock:
                    self._response = response
                if self._cancelled.is_set():
                    return
                if response.status_code >= 400:
                    response.read()
                    raise LlmError(_status_message(url, response.status_code, response.text))
                for data in _sse_data(response.iter_lines()):
                    if self._cancelled.is_set():
                        return
                    if data.strip() == "[DONE]":
                        break
                    piece = _delta(url, data)
                    if piece:
                        self.items.put(piece)
            self.items.put(_DONE)
        except LlmError as exc:
            self.items.put(exc)
        except httpx.HTTPError as exc:
            if not self._cancelled.is_set():
                self.items.put(LlmError(_transport_message(url, exc)))
        except Exception as exc:  # anything else is a bug in us or a very odd server; the caller must not hang
            if not self._cancelled.is_set():
                self.items.put(LlmError(f"reading the reply of {url} failed: {type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._response = None


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined with newlines)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _delta(url: str, data: str) -> str:
    """The text of one ``chat.completion.chunk`` (``""`` for role-only or empty chunks)."""
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise LlmError(f"{url} sent a malformed stream event (not JSON): {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise LlmError(f"{url} sent a malformed stream event: {data[:200]!r}")
    if "error" in chunk:
        raise LlmError(f"{url} reported an error: {_error_text(chunk['error'])}")
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        raise LlmError(f"{url} sent a stream event without choices: {data[:200]!r}")
    if not choices:
        return ""  # e.g. a final usage-only chunk
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if not isinstance(delta, dict):
        raise LlmError(f"{url} sent a stream event without a delta: {data[:200]!r}")
    content = delta.get("content")
    return content if isinstance(content, str) else ""


def _error_text(error: object) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or error.get("error")
        if message:
            return str(message)
    return str(error)


def _status_message(url: str, status: int, body: str) -> str:
    detail = body.strip()
    try:
        parsed = json.loads(detail)
    except ValueError:
        pass
    else:
        if isinstance(parsed, dict):
            for key in ("error", "detail", "message"):
                if key in parsed:
                    detail = _error_text(parsed[key])
                    break
    detail = detail[:_ERROR_BODY_CHARS] or httpx.codes.get_reason_phrase(status)
    hints = {401: "check [pipeline] openai_api_key_env", 403: "check [pipeline] openai_api_key_env",
             404: "check [pipeline] openai_url (it usually ends in /v1) and openai_model"}
    hint = f" ({hints[status]})" if status in hints else ""
    return f"{url} answered HTTP {status}: {detail}{hint}"


def _transport_message(url: str, exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return (f"cannot connect to the LLM endpoint {url}: {exc or 'connection refused'}; "
                "is the server running? (see [pipeline] openai_url)")
    if isinstance(exc, httpx.TimeoutException):
        return f"the LLM endpoint {url} timed out ({type(exc).__name__})"
    return f"the LLM endpoint {url} failed: {type(exc).__name__}: {exc}"
