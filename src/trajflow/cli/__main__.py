"""``python -m trajflow.cli`` (as ``torchrun ... -m trajflow.cli fit ...`` uses it)."""

import sys

from . import main

sys.exit(main())
