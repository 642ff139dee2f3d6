import sys

from taylorglo.train.cli import main

sys.exit(main())
