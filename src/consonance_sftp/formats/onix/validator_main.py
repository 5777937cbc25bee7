"""Entry point of the validator child process: ``python -m ...onix.validator_main``.

Kept apart from ``validate`` so running it as ``__main__`` does not import that module twice.
"""

import sys

from .validate import main

if __name__ == "__main__":
    sys.exit(main())
