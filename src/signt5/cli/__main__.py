"""``python -m signt5.cli``: the ``signt5`` command, as tests and benchmarks start it in a subprocess."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
