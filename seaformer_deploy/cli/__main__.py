"""``python -m seaformer_deploy.cli``: the console script without the install."""

import sys

from . import main

sys.exit(main())
