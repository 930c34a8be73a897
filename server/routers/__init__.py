"""The routers of the feature server, one module per area; `featurestore.server.app.ROUTERS` mounts them."""
