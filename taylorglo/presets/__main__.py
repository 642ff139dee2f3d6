"""``python -m taylorglo.presets``: see ``taylorglo.presets.cli``."""

import sys

from taylorglo.presets.cli import main

if __name__ == "__main__":
    sys.exit(main())
