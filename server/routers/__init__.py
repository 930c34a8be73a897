"""The routers of the feature server, one module per area; `server.app.ROUTERS` mounts them."""
