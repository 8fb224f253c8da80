"""The web console: static assets built from ``console/`` and served at ``/``."""

from modelyard.console.web import CSP, mount_console, static_dir

__all__ = ["CSP", "mount_console", "static_dir"]
