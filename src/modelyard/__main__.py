"""``python -m modelyard``: the same as the ``modelyard`` command."""

from modelyard.cli.main import app

app(prog_name="modelyard")
