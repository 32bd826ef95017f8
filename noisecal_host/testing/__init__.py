"""Measurement scaffolding on the ComfyUI side, not product: the testbed as a ComfyUI
model, tiny real architectures and a sampling helper, for tests, benchmarks and the demo."""
