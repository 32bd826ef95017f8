"""ComfyUI node adapters: thin wrappers over noisecal (math) and noisecal_host.

Always imported relatively from the pack's root (ComfyUI has its own
top-level `nodes` module). Each feature module exports its own mappings.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
