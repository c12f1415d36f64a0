"""The catalogue: the model market as web pages at `/ui`, over the registry and the
live server (see routes.py)."""

from __future__ import annotations

from aiaas.ui.routes import PREFIX, CatalogueUI

__all__ = ["PREFIX", "CatalogueUI"]
