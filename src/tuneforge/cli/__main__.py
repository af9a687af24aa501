"""``python -m tuneforge.cli`` (torchrun and ``accelerate launch`` start the command this way)."""

import sys

from tuneforge.cli.app import main

sys.exit(main())
