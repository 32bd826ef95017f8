"""Measurement scaffolding, not product: the exact-denoiser testbed, its metrics and
the closed-form optimal loss. Host-free, used by tests, benchmarks and the demo."""
