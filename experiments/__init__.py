"""The experiments pipeline: the grid of named runs (grid), running it (run), reading the runs (results) and
writing docs/RESULTS.md (doc) with its answers and figures."""
