"""`python -m servicelogs`: the command line."""

import sys

from servicelogs.cli import main

sys.exit(main())
