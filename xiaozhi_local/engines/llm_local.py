"""A GGUF chat model run in-process by llama.cpp (llama-cpp-python), with KV-cache reuse.

One :class:`LlamaCppLlm` holds one ``llama_cpp.Llama`` (one KV cache) shared by every
session, so generations are serialized behind a lock: a session whose turn arrives while
another is generating waits (queues) until that reply ends or is stopped.

Prompt processing is what makes the first token slow, so the engine avoids redoing it:

* The live context is reused up to the longest common token prefix with the new prompt.
* The KV state of the system message (plus the header of the user message after it) is
  snapshotted the first time that system message is seen, and restored whenever the live
  context diverges earlier (another session with other instructions ran in between).
* After a reply that ended normally, the template's text up to the next user message
  (``<|im_end|>\n<|im_start|>user\n``) is evaluated at once, and the dialogue's whole state
  is snapshotted, so that session's next turn only processes its new words, even if other
  sessions ran in between.

Snapshots are the KV cells of sequence 0 (``llama_state_seq_get_data``; ~12 KB per token for
Qwen2.5-0.5B, saved in ~9 ms and restored in ~3 ms per 1000 tokens), kept in an LRU bounded
in bytes; the one sharing the longest prefix with a prompt wins.

The prompt is rendered with the GGUF's own chat template (``tokenizer.chat_template``);
generation stops at the model's end-of-generation tokens and the template's end-of-turn
token, at ``max_tokens``, or within one token of the caller's ``stop`` event (the prompt
itself is processed in chunks, checking ``stop`` between them).
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter
from numpy.typing import NDArray

from xiaozhi_local.errors import LlmError

from .base import ChatMessage, GenerationOptions

__all__ = ["LlamaCppLlm", "PromptStats"]

_LOG = logging.getLogger(__name__)

_TOP_K: Final = 40
_MIN_P: Final = 0.05
_REPEAT_PENALTY: Final = 1.1
_LOCK_POLL_S: Final = 0.05
_EVAL_CHUNK: Final = 128
"""Prompt tokens evaluated between two looks at the ``stop`` event."""
_PREFIX_SNAPSHOTS: Final = 4
"""System-prompt snapshots kept (one per distinct system message; they are small)."""
_MARK: Final = "\ue000"
"""A private-use character used to find where the template ends an assistant turn."""

Tokens = NDArray[np.intc]


@dataclass(frozen=True)
class PromptStats:
    """How the last prompt was processed (for logs, the turn timings and tests)."""

    prompt_tokens: int
    reused_tokens: int
    """Tokens whose KV state was reused (live context or a snapshot) instead of evaluated."""
    source: str
    """"cold", "live" (the context left by the previous generation) or "snapshot"."""


@dataclass
class _Snapshot:
    tokens: Tokens
    data: ctypes.Array[ctypes.c_uint8]
    pinned: bool
    """A system-prompt snapshot (kept in its own small LRU, not evicted by dialogue states)."""


def _common_prefix(a: Tokens, b: Tokens) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise LlmError(f"GGUF model file not found: {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise LlmError(f"cannot read GGUF model file {path}: {exc}") from exc
    if magic != b"GGUF":
        raise LlmError(f"{path} is not a GGUF model file (bad header); the download may be corrupt")


class LlamaCppLlm:
    """A local GGUF chat model. Implements :class:`~xiaozhi_local.engines.base.Llm`.

    Thread-safe: all sessions share one model and one KV cache, and ``stream_chat``
    generations run one at a time (a lock; later callers queue, and give up waiting if their
    ``stop`` is set). Consume the returned iterator to the end or ``close()`` it: the lock is
    held while it is suspended. ``count_tokens`` does not take the lock.
    """

    context_size: int

    def __init__(self, model_path: Path, *, context_size: int = 2048, threads: int = 0, seed: int = -1,
                 verbose: bool = False, snapshot_mb: int = 256) -> None:
        self.model_path = Path(model_path)
        _check_gguf(self.model_path)
        if context_size < 64:
            raise LlmError(f"context_size {context_size} is too small for a chat model (use at least 256 tokens)")
        n_threads = threads if threads > 0 else (os.cpu_count() or 1)
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(self.model_path), n_ctx=context_size, n_batch=min(_EVAL_CHUNK, context_size),
                n_ubatch=min(_EVAL_CHUNK, context_size),
                n_threads=n_threads, n_threads_batch=n_threads, seed=llama_cpp.LLAMA_DEFAULT_SEED,
                verbose=verbose)
        except Exception as exc:  # llama-cpp-python raises ValueError for unreadable/unsupported files
            raise LlmError(f"cannot load GGUF model {self.model_path}: {exc}") from exc
        self.context_size = int(self._llm.n_ctx())
        self.threads = n_threads
        self._seed = seed
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._memory = llama_cpp.llama_get_memory(self._llm.ctx)
        self._lock = threading.Lock()
        self._snapshot_budget = max(0, snapshot_mb) * 1024 * 1024
        self._snapshots: OrderedDict[bytes, _Snapshot] = OrderedDict()
        self.last_prompt: PromptStats | None = None
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            _LOG.warning("%s has no chat template; using ChatML", self.model_path.name)
            template = CHATML_CHAT_TEMPLATE
        self._formatter = self._make_formatter(template, generation_prompt=True)
        self._formatter_no_prompt = self._make_formatter(template, generation_prompt=False)
        self._stop_ids, self._turn_gap = self._template_turn_end()

    # ---- public ---------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream_chat(self, messages: Sequence[ChatMessage], options: GenerationOptions,
                    stop: threading.Event) -> Iterator[str]:
        tokens, prefix_len = self._encode(messages)
        if len(tokens) >= self.context_size:
            raise LlmError(f"the prompt needs {len(tokens)} tokens but the model's context holds "
                           f"{self.context_size}; shorten the history or raise [pipeline] llm_context")
        max_tokens = min(options.max_tokens, self.context_size - len(tokens))
        if stop.is_set() or max_tokens <= 0 or not self._acquire(stop):
            return
        try:
            yield from self._generate(tokens, prefix_len, max_tokens, options, stop)
        finally:
            self._lock.release()

    def reset_cache(self) -> None:
        """Forget every snapshot and the live context (the next prompt is processed cold)."""
        with self._lock:
            self._snapshots.clear()
            self._clear_live()

    def close(self) -> None:
        with self._lock:
            self._snapshots.clear()
            self._llm.close()

    # ---- prompt ---------------------------------------------------------------------------
    def _make_formatter(self, template: str, *, generation_prompt: bool) -> Jinja2ChatFormatter:
        def token_text(token_id: int) -> str:
            if token_id < 0:
                return ""
            text: bytes = llama_cpp.llama_vocab_get_text(self._vocab, token_id)
            return text.decode("utf-8", errors="replace")

        return Jinja2ChatFormatter(template=template, eos_token=token_text(self._llm.token_eos()),
                                   bos_token=token_text(self._llm.token_bos()),
                                   add_generation_prompt=generation_prompt)

    def _render(self, messages: Sequence[dict[str, Any]], *, generation_prompt: bool) -> str:
        formatter = self._formatter if generation_prompt else self._formatter_no_prompt
        try:
            return formatter(messages=list(messages)).prompt  # type: ignore[arg-type]
        except Exception as exc:  # jinja2 errors and the template's raise_exception (ValueError)
            raise LlmError(f"the chat template of {self.model_path.name} rejected the conversation: {exc}") from exc

    def _tokenize_prompt(self, text: str) -> Tokens:
        bos_text = self._formatter.bos_token
        add_bos = (self._llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"
                   and not (bos_text and text.startswith(bos_text)))
        return np.asarray(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True), dtype=np.intc)

    def _encode(self, messages: Sequence[ChatMessage]) -> tuple[Tokens, int]:
        """Prompt tokens and how many of them are the system message (the cacheable prefix)."""
        if not messages:
            raise LlmError("no messages to answer")
        dicts = [{"role": m.role, "content": m.content} for m in messages]
        tokens = self._tokenize_prompt(self._render(dicts, generation_prompt=True))
        prefix_len = 0
        if messages[0].role == "system":
            prefix_len = _common_prefix(self._system_head(messages[0].content), tokens)
        return tokens, min(prefix_len, len(tokens) - 1)

    def _system_head(self, system: str) -> Tokens:
        """The tokens of the system message plus the header of the user message after it.

        The header (``<|im_start|>user\\n``) follows the system message in almost every prompt
        (history starts with a user turn), so it belongs in the cached prefix.
        """
        dicts = [{"role": "system", "content": system}, {"role": "user", "content": _MARK}]
        try:
            text = self._render(dicts, generation_prompt=False).split(_MARK, 1)[0]
        except LlmError:
            text = self._render(dicts[:1], generation_prompt=False)
        return self._tokenize_prompt(text)

    def _template_turn_end(self) -> tuple[frozenset[int], Tokens]:
        """The template's end-of-turn control token, and the tokens between a reply and the next user text.

        For ChatML that is ``<|im_end|>`` and ``<|im_end|>\\n<|im_start|>user\\n``. After a reply
        that ended on that token the gap is evaluated at once, so the session's next turn only
        processes its own words.
        """
        dicts = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARK},
                 {"role": "user", "content": _MARK}]
        try:
            text = self._render(dicts, generation_prompt=False)
        except LlmError:
            return frozenset(), np.zeros(0, dtype=np.intc)
        parts = text.split(_MARK)
        gap = parts[1] if len(parts) == 3 else ""
        ids = self._llm.tokenize(gap.encode("utf-8"), add_bos=False, special=True)
        if not ids or not llama_cpp.llama_vocab_get_attr(self._vocab, ids[0]) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
            return frozenset(), np.zeros(0, dtype=np.intc)
        return frozenset(ids[:1]), np.asarray(ids, dtype=np.intc)

    # ---- generation -----------------------------------------------------------------------
    def _acquire(self, stop: threading.Event) -> bool:
        while not self._lock.acquire(timeout=_LOCK_POLL_S):
            if stop.is_set():
                return False
        if stop.is_set():
            self._lock.release()
            return False
        return True

    def _generate(self, tokens: Tokens, prefix_len: int, max_tokens: int, options: GenerationOptions,
                  stop: threading.Event) -> Iterator[str]:
        llm = self._llm
        try:
            if not self._prepare(tokens, prefix_len, stop):
                return
        except RuntimeError as exc:
            self._clear_live()
            raise LlmError(f"llama.cpp failed to process the prompt: {exc}") from exc
        seed = options.seed if options.seed is not None else self._seed
        llm.set_seed(seed if seed >= 0 else llama_cpp.LLAMA_DEFAULT_SEED)
        temperature = max(0.0, options.temperature)
        generator = llm.generate(tokens.tolist(), temp=temperature, top_p=options.top_p, top_k=_TOP_K,
                                 min_p=_MIN_P, repeat_penalty=_REPEAT_PENALTY, reset=True)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = False
        failed = False
        end_token: int | None = None
        try:
            for count, token in enumerate(generator, start=1):
                if stop.is_set():
                    break
                if token in self._stop_ids or llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    end_token = token
                    break
                piece = decoder.decode(self._piece(token))
                if not started:  # a reply starts at its first visible character
                    piece = piece.lstrip()
                    started = bool(piece)
                if piece:
                    yield piece
                if count >= max_tokens or stop.is_set():
                    break
            tail = decoder.decode(b"", final=True)
            if tail and started and not stop.is_set():
                yield tail
        except RuntimeError as exc:
            failed = True
            self._clear_live()
            raise LlmError(f"llama.cpp failed while generating: {exc}") from exc
        finally:
            generator.close()
            if not failed:  # also when the consumer closed us early: the state is consistent
                self._finish_turn(prefix_len, end_token)

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:max(n, 0)]

    # ---- KV cache -------------------------------------------------------------------------
    def _prepare(self, tokens: Tokens, prefix_len: int, stop: threading.Event) -> bool:
        """Leave the context holding the KV state of all of ``tokens`` (logits for the last one).

        False if ``stop`` was set meanwhile (the prompt is evaluated in chunks, checking it between).
        """
        llm = self._llm
        live = _common_prefix(np.asarray(llm.input_ids[:llm.n_tokens]), tokens)
        best, best_len = None, live
        for snapshot in self._snapshots.values():
            shared = _common_prefix(snapshot.tokens, tokens)
            if shared > best_len:
                best, best_len = snapshot, shared
        source = "live" if live else "cold"
        if best is not None:
            if self._restore(best):
                source = "snapshot"
            else:
                best_len = 0
        reuse = min(best_len, len(tokens) - 1)  # at least one token is evaluated, for fresh logits
        if reuse < llm.n_tokens and not llama_cpp.llama_memory_seq_rm(self._memory, 0, reuse, -1):
            self._clear_live()  # recurrent and sliding-window caches cannot drop a suffix: start over
            reuse = 0
        llm.n_tokens = reuse
        self.last_prompt = PromptStats(prompt_tokens=len(tokens), reused_tokens=reuse,
                                       source=source if reuse else "cold")
        if reuse < prefix_len:
            if not self._eval(tokens[reuse:prefix_len], stop):
                return False
            self._save(tokens[:prefix_len], pinned=True)
        _LOG.debug("prompt of %d tokens, %d reused (%s)", len(tokens), reuse, source)
        return self._eval(tokens[llm.n_tokens:], stop)

    def _eval(self, tokens: Tokens, stop: threading.Event) -> bool:
        for start in range(0, len(tokens), _EVAL_CHUNK):
            if stop.is_set():
                return False
            self._llm.eval(tokens[start:start + _EVAL_CHUNK].tolist())
        return True

    def _clear_live(self) -> None:
        llama_cpp.llama_memory_clear(self._memory, True)
        self._llm.n_tokens = 0

    def _restore(self, snapshot: _Snapshot) -> bool:
        llm = self._llm
        llama_cpp.llama_memory_seq_rm(self._memory, 0, -1, -1)
        if not llama_cpp.llama_state_seq_set_data(llm.ctx, snapshot.data, len(snapshot.data), 0):
            _LOG.warning("could not restore a KV snapshot; processing the prompt without it")
            self._snapshots.pop(snapshot.tokens.tobytes(), None)
            self._clear_live()
            return False
        n = len(snapshot.tokens)
        llm.input_ids[:n] = snapshot.tokens
        llm.n_tokens = n
        self._snapshots.move_to_end(snapshot.tokens.tobytes())
        return True

    def _save(self, tokens: Tokens, *, pinned: bool) -> None:
        if self._snapshot_budget <= 0 or len(tokens) == 0:
            return
        ctx = self._llm.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        if size > self._snapshot_budget // 2:
            return
        data = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(ctx, data, size, 0) != size:
            return
        key = tokens.tobytes()
        self._snapshots[key] = _Snapshot(tokens=tokens.copy(), data=data, pinned=pinned)
        self._snapshots.move_to_end(key)
        self._evict()

    def _finish_turn(self, prefix_len: int, end_token: int | None) -> None:
        """Evaluate the gap to the next user turn (if the reply ended normally) and snapshot the dialogue."""
        llm = self._llm
        gap = self._turn_gap
        if end_token is not None and len(gap) and end_token == gap[0] and llm.n_tokens + len(gap) < self.context_size:
            try:
                llm.eval(gap.tolist())
            except RuntimeError as exc:
                _LOG.warning("could not pre-evaluate the next turn's header: %s", exc)
                self._clear_live()
                return
        self._snapshot_dialogue(prefix_len)

    def _snapshot_dialogue(self, prefix_len: int) -> None:
        llm = self._llm
        n = llm.n_tokens
        if n <= prefix_len:
            return
        tokens = np.array(llm.input_ids[:n], dtype=np.intc)
        # an older state of this dialogue is superseded by the new one
        for key, snapshot in list(self._snapshots.items()):
            if not snapshot.pinned and len(snapshot.tokens) < n and _common_prefix(snapshot.tokens, tokens) == len(
                    snapshot.tokens):
                del self._snapshots[key]
        self._save(tokens, pinned=False)

    def _evict(self) -> None:
        pinned = [k for k, s in self._snapshots.items() if s.pinned]
        for key in pinned[:-_PREFIX_SNAPSHOTS]:
            del self._snapshots[key]
        total = sum(len(s.data) for s in self._snapshots.values())
        for key in list(self._snapshots):
            if total <= self._snapshot_budget:
                break
            snapshot = self._snapshots[key]
            if not snapshot.pinned:
                total -= len(snapshot.data)
                del self._snapshots[key]
