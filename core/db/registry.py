"""Import every model module so ``Base.metadata`` is complete (for alembic and metadata tests)."""

from __future__ import annotations

import importlib

from core.domains import model_modules


def load_all_models() -> None:
    """Import the model modules every domain declares (see :mod:`core.domains`)."""
    for name in model_modules():
        importlib.import_module(name)
