"""``python -m controller`` runs the CLI."""

import sys

from controller.cli.main import main

sys.exit(main())
