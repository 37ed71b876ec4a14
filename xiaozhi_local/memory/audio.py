"""The opt-in debugging store of utterance audio (``[memory] keep_audio``, off by default).

When on, each voice turn's utterance is written as a 16 kHz WAV under ``<data dir>/utterances/
<YYYY-MM-DD>/<session>-<turn>.wav`` and its path is kept on the user's message. :meth:`AudioKeeper.sweep`
deletes files older than the retention period (and clears their paths); the assistant sweeps at start
and after every session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..audio.wav import write_wav
from ..store.memory import MemoryStore

__all__ = ["AudioKeeper"]

log = logging.getLogger(__name__)

DAY_S = 86400.0
ORPHAN_GRACE_S = 600.0
"""A file no message refers to (forgotten, or its turn not stored yet) is deleted after this long."""


class AudioKeeper:
    def __init__(self, root: Path, retention_days: float, clock: Callable[[], float] = time.time, *,
                 orphan_grace_s: float = ORPHAN_GRACE_S):
        self.root = root
        self.retention_s = retention_days * DAY_S
        self.clock = clock
        self.orphan_grace_s = orphan_grace_s

    def save(self, pcm: npt.NDArray[np.int16], session_id: str, turn: int, sample_rate: int = 16000) -> str:
        """Blocking: write the utterance; returns its path."""
        day = time.strftime("%Y-%m-%d", time.localtime(self.clock()))
        path = self.root / day / f"{session_id[:8]}-{turn:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, np.asarray(pcm, dtype=np.int16), sample_rate)
        return str(path)

    def sweep(self, store: MemoryStore) -> int:
        """Blocking: delete kept audio older than the retention period, and recordings of forgotten
        messages. Returns the files deleted."""
        cutoff = self.clock() - self.retention_s
        deleted = 0
        expired = store.audio_files(older_than=cutoff)
        for _, name in expired:
            deleted += _unlink(Path(name))
        store.clear_audio_file([message_id for message_id, _ in expired])
        if self.root.is_dir():  # files whose message is gone (forgotten) or was never stored
            referenced = store.referenced_audio()
            orphan_cutoff = self.clock() - self.orphan_grace_s
            for path in self.root.glob("*/*.wav"):
                try:
                    mtime = path.stat().st_mtime
                except OSError:
                    continue
                if mtime < cutoff or (mtime < orphan_cutoff and str(path) not in referenced):
                    deleted += _unlink(path)
            for day in self.root.iterdir():
                if day.is_dir() and not any(day.iterdir()):
                    day.rmdir()
        if deleted:
            log.info("deleted %d kept utterance recording(s) older than %.0f days", deleted, self.retention_s / DAY_S)
        return deleted


def _unlink(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("cannot delete %s: %s", path, exc)
        return 0
