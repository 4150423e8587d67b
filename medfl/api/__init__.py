"""The web service (public): ``create_app(settings)`` builds the FastAPI app that
``medfl serve`` runs; the page at /, the API under /api/, OpenAPI at /docs."""

from medfl.api._app import create_app
from medfl.api._settings import Settings

__all__ = ["Settings", "create_app"]
