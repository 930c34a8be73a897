"""The featurestore HTTP feature server (FastAPI): online lookups, push, catalog, health and metrics.

    from server import create_app
    app = create_app(FeatureStore("definitions"))

Run it with `fs serve` (see `server.run`).
"""

from .app import create_app

__all__ = ["create_app"]
