"""The SDK's transports (embedded and remote) and its per-domain wrappers."""
