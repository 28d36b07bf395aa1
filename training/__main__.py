"""`python -m onegen_training`: see training/cli.py."""

import sys

from onegen_training.cli import main

sys.exit(main())
