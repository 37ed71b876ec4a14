"""xiaozhi-local: a fully offline server for Xiaozhi ESP32 voice devices."""

from __future__ import annotations

__version__ = "0.1.0"
