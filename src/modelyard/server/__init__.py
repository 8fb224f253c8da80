"""The HTTP server: routes derived from operations, middleware, health checks."""
