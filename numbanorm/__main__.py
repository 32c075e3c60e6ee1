"""``python -m numbanorm``: the command line (see :mod:`numbanorm.cli`)."""
import sys

from .cli import main

sys.exit(main())
