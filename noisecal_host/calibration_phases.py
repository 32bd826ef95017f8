"""One progress bar over a calibration's phases, and what each phase cost.

A calibration runs in phases (self-generation, the NoiseShift search, the
correction table, the held-out check, the guidance stage). The bar moves over
all of them, each taking the share of its expected network evaluations; the
phase's name goes to the node's progress text; the rows through the network
and the seconds of each phase go into the record (`cost.phases`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from .network_calls import network_calls

# the record's names of the phases, in the order they run
GENERATION, NOISESHIFT, CORRECTION, CHECK, GUIDANCE = (
    "self-generation",
    "noiseshift",
    "correction",
    "check",
    "guidance",
)
LABELS = {
    GENERATION: "generating the calibration set",
    NOISESHIFT: "NoiseShift search",
    CORRECTION: "correction table",
    CHECK: "held-out check",
    GUIDANCE: "guidance weight",
}
BAR_UNITS = 1000


class Phases:
    """Progress and cost of the phases of one calibration."""

    def __init__(
        self,
        plan: dict[str, float],
        progress: Callable[[int, int], None] | None = None,
        say: Callable[[str], None] | None = None,
    ):
        """plan: each phase's expected network evaluations, in order (its bar share);
        progress(done, total): the bar (may raise to cancel); say: progress text."""
        total = sum(plan.values()) or 1.0
        self.start: dict[str, float] = {}
        done = 0.0
        for name, weight in plan.items():
            self.start[name] = done / total
            done += weight
        self.share = {name: weight / total for name, weight in plan.items()}
        self.progress, self.say = progress, say
        self.cost: dict[str, dict] = {}

    def _update(self, name: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        fraction = self.start.get(name, 0.0) + self.share.get(name, 0.0) * done / max(total, 1)
        self.progress(min(BAR_UNITS, round(fraction * BAR_UNITS)), BAR_UNITS)

    @contextlib.contextmanager
    def phase(self, name: str, model):
        """Count the rows `model`'s network evaluates and the seconds inside; yields
        the phase's progress(done, total)."""
        if self.say is not None:
            self.say(f"{LABELS.get(name, name)}...")
        self._update(name, 0, 1)
        started = time.perf_counter()
        with network_calls(model) as calls:
            yield lambda done, total: self._update(name, done, total)
        self.add(name, calls[0], time.perf_counter() - started)
        self._update(name, 1, 1)

    def add(self, name: str, evaluations: int, seconds: float) -> None:
        """Record a phase's cost (also one that ran elsewhere, or was cached: 0)."""
        entry = self.cost.setdefault(name, {"network_evaluations": 0, "seconds": 0.0})
        entry["network_evaluations"] += int(evaluations)
        entry["seconds"] = round(entry["seconds"] + float(seconds), 3)

    def evaluations(self, *names: str) -> int:
        return sum(
            self.cost[n]["network_evaluations"] for n in names or self.cost if n in self.cost
        )


def progress_text() -> Callable[[str], None] | None:
    """A function that shows text on the executing node (ComfyUI's progress text), or
    None on hosts without it (before 2025, or headless)."""
    try:
        from comfy_execution.utils import get_executing_context
        from server import PromptServer
    except ImportError:
        return None
    server = getattr(PromptServer, "instance", None)
    context = get_executing_context()
    if server is None or context is None or not hasattr(server, "send_progress_text"):
        return None

    def say(text: str) -> None:
        server.send_progress_text(text, context.node_id)

    return say
