"""What the benchmark scripts share.

- ``host``: bootstraps the ComfyUI host and the pack (import it before any
  ``comfy`` or ``noise_calibration`` module) and looks up node classes.
- ``seeds``: the fixed seeds.
- ``testbed``: the exact-denoiser testbed as a ComfyUI MODEL, schedules,
  calibration latents, FD of KSampler samples, noise floor, gap closed.
- ``calibration``: a private calibration store, calibration through
  ``run_search`` with its calibration record, and the patch nodes.
- ``timing``: interleaved wall-time repeats of two models.
- ``report``: number formats, tables, PASS/MISS verdicts, JSON values.
- ``run``: the command line, the run's state, the section loop and the
  common end (plots, results JSON, summary).
"""
