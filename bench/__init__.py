"""Performance: training/eval throughput (benchmark), peak memory (memory), the input pipeline
(input_throughput), each conv's cost (profile_layers), rewrites of the slow layers (alternatives), the
per-step overhead (step_overhead) and the host allocator's page faults per step (host_memory)."""
