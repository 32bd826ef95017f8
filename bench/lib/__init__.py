"""What the benchmark scripts share: how things are measured (bench/README.md,
"Layout", says what each module holds). ``host`` bootstraps the ComfyUI host and
the pack: import it (or any module here) before any ``comfy`` or
``noise_calibration`` module."""
