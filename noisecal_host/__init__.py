"""ComfyUI-side helpers that are not nodes: host discovery, model fingerprints,
the testbed as a ComfyUI model, tiny real architectures, sampling, the CLI.

Modules here (except `host`) import `comfy`: call `host.ensure_host()` first
when running outside ComfyUI (tests, the CLI). Inside ComfyUI it is loaded.
Submodules are imported on demand, never here, so `host` works before comfy.
"""
