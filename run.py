"""DRPO from the command line: `python run.py` runs the demo; `python run.py optimize --help`."""

import sys

from drpo.cli import main

if __name__ == "__main__":
    sys.exit(main())
