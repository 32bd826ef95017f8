"""Count what the diffusion network evaluates: the cost the pack reports."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def network_calls(model):
    """Count the latents the diffusion network evaluates (rows of each forward call)."""
    count = [0]

    def seen(module, args):
        count[0] += int(args[0].shape[0])

    handle = model.model.diffusion_model.register_forward_pre_hook(seen)
    try:
        yield count
    finally:
        handle.remove()
