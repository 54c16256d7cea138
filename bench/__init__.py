"""Performance: training/eval throughput (benchmark), peak memory (memory), the input pipeline
(input_throughput), each conv's cost (profile_layers), rewrites of the slow layers (alternatives) and the
per-step overhead (step_overhead)."""
