"""``python -m modelyard.serving``: see :mod:`modelyard.serving.process`."""

from __future__ import annotations

import sys

from modelyard.serving.process import main

if __name__ == "__main__":
    sys.exit(main())
