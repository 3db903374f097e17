"""``python -m ebmguide`` runs the ``ebmguide`` command."""

import sys

from ebmguide.cli import main

if __name__ == "__main__":
    sys.exit(main())
