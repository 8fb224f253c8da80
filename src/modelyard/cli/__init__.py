"""The ``modelyard`` command line: one command group per domain, thin calls to the SDK."""
