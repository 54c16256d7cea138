"""`python -m compare.benchmark`, the command's name in the project's contract; the benchmark is bench/benchmark.py."""

import sys

from bench.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
