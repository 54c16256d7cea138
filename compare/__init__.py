"""Equivalence: weight conversion (convert), parity (parity, train_parity, noise_floor), the shared init
(init_weights), the analytic summary (summary), side-by-side runs (report) and evaluation (evaluate)."""
