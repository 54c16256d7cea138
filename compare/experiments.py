"""`python -m compare.experiments`, the command's name in the project's contract; the runner is experiments/run.py."""

import sys

from experiments.run import main

if __name__ == "__main__":
    sys.exit(main())
