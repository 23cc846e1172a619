import sys

from hwbench.compare.cli import main

sys.exit(main())
