"""`python -m medfl` is the `medfl` command."""

import sys

from medfl.cli import main

sys.exit(main())
