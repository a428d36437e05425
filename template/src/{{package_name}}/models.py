"""Your own tables: define them here, on the core's `Base`, and make a migration for them
(README, "Database and migrations"). `copier update` never changes this file."""

from __future__ import annotations

from .core.db import Base

__all__ = ["Base"]
