"""The project's SQLite database: connection, migrations and the tables each component owns.

Importing this package registers every component's migrations (see :mod:`.db`), so any process
that calls :func:`connect` brings the whole schema up to date. A new component adds its module
to the imports below.
"""

from __future__ import annotations

from . import (
    devices,  # noqa: F401  (registers the "devices" migrations)
    memory,  # noqa: F401  (registers the "memory" migrations)
)
from .db import Database, Migration, StoreError, connect, register_migrations

__all__ = ["Database", "Migration", "StoreError", "connect", "register_migrations"]
