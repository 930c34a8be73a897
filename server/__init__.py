"""The featurestore HTTP feature server (FastAPI): online lookups, push, catalog, health and metrics.

    from featurestore.server import create_app
    app = create_app(FeatureStore("definitions"))

Run it with `fs serve` (see `featurestore.server.run`).
"""

from .app import create_app

__all__ = ["create_app"]
