"""`python -m growlang` = the `growlang` command."""

import sys

from growlang.cli import main

sys.exit(main())
