"""OpenAiLlm against a real OpenAI-compatible server (llama-cpp-python's, on loopback, running the
SmolLM2 test model) and, for the failure cases, against a tiny stub server."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.engines import real_models
from xiaozhi_local.engines.base import ChatMessage, GenerationOptions
from xiaozhi_local.engines.llm_openai import OpenAiLlm, estimate_tokens
from xiaozhi_local.errors import LlmError

LLM_MODEL = ("smollm2-135m-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf")
QUESTION = [ChatMessage("system", "You are a helpful voice assistant. Answer in one short sentence."),
            ChatMessage("user", "What is two plus two?")]
GREEDY = GenerationOptions(max_tokens=16, temperature=0.0)
SERVER_START_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with the test model, on loopback only."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(real_models().joinpath(*LLM_MODEL)),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"]
    log = log_path.open("wb")  # a file, not a pipe: the server logs a lot and would block on a full pipe
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                output = log_path.read_text(errors="replace")
                pytest.fail(f"llama_cpp.server exited with {process.returncode}: {output[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer on {base} within {SERVER_START_S} s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def llm(server_url: str) -> Iterator[OpenAiLlm]:
    engine = OpenAiLlm(server_url, timeout_s=120)
    yield engine
    engine.close()


@pytest.mark.models
def test_streams_a_reply_from_a_real_server(llm: OpenAiLlm, server_url: str) -> None:
    pieces = list(llm.stream_chat(QUESTION, GREEDY, threading.Event()))
    assert len(pieces) > 1
    assert "".join(pieces).strip()
    listed = httpx.get(f"{server_url}/models").json()["data"][0]["id"]
    assert llm.model == listed  # model "" = the first one the server lists


@pytest.mark.models
def test_stop_event_ends_the_real_stream(llm: OpenAiLlm) -> None:
    options = GenerationOptions(max_tokens=32, temperature=0.0)
    assert len(list(llm.stream_chat(QUESTION, options, threading.Event()))) > 3
    stop = threading.Event()
    pieces = []
    for piece in llm.stream_chat(QUESTION, options, stop):
        pieces.append(piece)
        stop.set()
    assert len(pieces) == 1
    # the server is still usable afterwards
    assert list(llm.stream_chat(QUESTION, GREEDY, threading.Event()))


# ---- failures ------------------------------------------------------------------------------
# A stand-in for a remote OpenAI-compatible server we do not run ourselves (a hosted API, a
# misconfigured proxy): it answers with whatever status and body a test asks for.
Route = Callable[[BaseHTTPRequestHandler], None]


class StubServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.release = threading.Event()
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle_route(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length)
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            do_GET = handle_route
            do_POST = handle_route

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    yield server
    server.stop()


def reply(status: int, body: bytes, content_type: str = "application/json") -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return route


def sse(*events: str, hang: threading.Event | None = None) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        for data in events:
            h.wfile.write(f"data: {data}\n\n".encode())
            h.wfile.flush()
        if hang is not None:
            hang.wait(60)

    return route


def chunk(text: str) -> str:
    return json.dumps({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    llm = OpenAiLlm(url, model="any", timeout_s=5)
    with pytest.raises(LlmError, match=re.escape(url)):
        list(llm.stream_chat(QUESTION, GREEDY, threading.Event()))


def test_http_404_carries_the_servers_message(stub: StubServer) -> None:
    stub.routes["/v1/chat/completions"] = reply(404, json.dumps(
        {"error": {"message": "model 'qwen-9000' not found", "type": "invalid_request_error"}}).encode())
    llm = OpenAiLlm(stub.base, model="qwen-9000")
    with pytest.raises(LlmError, match="404") as caught:
        list(llm.stream_chat(QUESTION, GREEDY, threading.Event()))
    assert "model 'qwen-9000' not found" in str(caught.value)
    assert stub.base in str(caught.value)


def test_http_500_carries_the_servers_text(stub: StubServer) -> None:
    stub.routes["/v1/chat/completions"] = reply(500, b"out of memory while loading", "text/plain")
    llm = OpenAiLlm(stub.base, model="m")
    with pytest.raises(LlmError, match=r"500.*out of memory while loading"):
        list(llm.stream_chat(QUESTION, GREEDY, threading.Event()))


def test_stream_pieces_and_done(stub: StubServer) -> None:
    stub.routes["/v1/chat/completions"] = sse(
        json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        chunk("Hel"), chunk("lo 你好"), "[DONE]", chunk("never read"))
    llm = OpenAiLlm(stub.base, model="m")
    assert list(llm.stream_chat(QUESTION, GREEDY, threading.Event())) == ["Hel", "lo 你好"]


def test_malformed_event_names_the_url(stub: StubServer) -> None:
    stub.routes["/v1/chat/completions"] = sse(chunk("Hi"), "{not json")
    llm = OpenAiLlm(stub.base, model="m")
    with pytest.raises(LlmError, match=re.escape(stub.base)):
        list(llm.stream_chat(QUESTION, GREEDY, threading.Event()))


def test_error_event_in_the_stream_is_reported(stub: StubServer) -> None:
    stub.routes["/v1/chat/completions"] = sse(json.dumps({"error": {"message": "context length exceeded"}}))
    llm = OpenAiLlm(stub.base, model="m")
    with pytest.raises(LlmError, match="context length exceeded"):
        list(llm.stream_chat(QUESTION, GREEDY, threading.Event()))


def test_stop_ends_a_stream_whose_server_went_quiet(stub: StubServer) -> None:
    stub.routes["/v1/chat/completions"] = sse(chunk("first"), hang=stub.release)
    llm = OpenAiLlm(stub.base, model="m")
    stop = threading.Event()
    pieces: list[str] = []

    def consume() -> None:
        for piece in llm.stream_chat(QUESTION, GREEDY, stop):
            pieces.append(piece)
            stop.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=30)  # the stub holds the stream open for 60 s: only stop can end it sooner
    assert not consumer.is_alive()
    assert pieces == ["first"]


def test_model_is_asked_from_the_server_once(stub: StubServer) -> None:
    asked: list[str] = []

    def models(h: BaseHTTPRequestHandler) -> None:
        asked.append(h.path)
        reply(200, json.dumps({"object": "list", "data": [{"id": "served-model"}, {"id": "other"}]}).encode())(h)

    sent: list[dict[str, object]] = []

    def completions(h: BaseHTTPRequestHandler) -> None:
        sent.append(json.loads(h.body))  # type: ignore[attr-defined]
        sse(chunk("ok"), "[DONE]")(h)

    stub.routes["/v1/models"] = models
    stub.routes["/v1/chat/completions"] = completions
    llm = OpenAiLlm(stub.base + "/")
    for _ in range(2):
        assert list(llm.stream_chat(QUESTION, GREEDY, threading.Event())) == ["ok"]
    assert llm.model == "served-model"
    assert asked == ["/v1/models"]
    assert [body["model"] for body in sent] == ["served-model", "served-model"]
    assert all(body["stream"] is True for body in sent)


def test_a_server_without_models_says_what_to_set(stub: StubServer) -> None:
    stub.routes["/v1/models"] = reply(200, b'{"object": "list", "data": []}')
    llm = OpenAiLlm(stub.base)
    with pytest.raises(LlmError, match="openai_model"):
        list(llm.stream_chat(QUESTION, GREEDY, threading.Event()))


def test_token_estimate_grows_with_text_and_counts_chinese_per_character() -> None:
    assert estimate_tokens("") == 0
    assert 0 < estimate_tokens("hello") < estimate_tokens("hello there, how are you doing today?")
    assert estimate_tokens("你好世界") == len("你好世界")
