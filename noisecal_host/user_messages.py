"""Warnings a user must see, sent to ComfyUI's frontend as well as logged.

The pack's web extension (web/js/noise_calibration.js) shows each message as a
toast naming the node it came from. A message goes to the client that queued
the prompt (`PromptServer.instance.client_id`, all clients when none) as the
event EVENT with {"id", "subject", "text", "level", "node", "prompt_id", "what"}.

Every message has a stable id (the table below): deduplication, tests and
benchmarks use it, never the wording. The log record carries it as
`record.message_id`. Without a server (the command line, tests, the snapshot
host) nothing is sent and nothing fails: `send` only logs. A message of one id
for the same node (and subject) is sent once per prompt, however many sampling
steps or sizes repeat it.

`warner(log)` is what a patch built in a node keeps for sampling time: it
remembers the node that built it (sampling runs while the sampler node is the
one executing), so the toast names the NoiseShift node, not the KSampler.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from ..noisecal.plan import PASS_THROUGH, SIZES_DISAGREE

EVENT = "noise_calibration.message"
MAX_PROMPTS = 32  # prompts whose sent messages are remembered for deduplication

# The ids of the messages a user sees; the text is written where it is raised.
PAIR = "noiseshift-with-correction"  # NoiseShift and NLC nodes on one model
APPLY_AND_METHOD = "apply-with-single-method"  # Apply and a method node on one model
OTHER_CHECKPOINT = "calibration-of-another-checkpoint"
OTHER_PRECISION = "calibration-at-another-precision"
LOST_TO_ROUNDING = "shifts-lost-to-rounding"
PATCH_DROPPED = "patch-dropped"
STEP_CACHE = "step-cache"
NO_CALIBRATED_GUIDANCE = "no-calibrated-guidance"
IDS = frozenset(
    {
        PASS_THROUGH,  # a node samples a size without its calibration
        SIZES_DISAGREE,  # two calibrated sizes around a size recommend different methods
        PAIR,
        APPLY_AND_METHOD,
        OTHER_CHECKPOINT,
        OTHER_PRECISION,
        LOST_TO_ROUNDING,
        PATCH_DROPPED,
        STEP_CACHE,
        NO_CALIBRATED_GUIDANCE,
    }
)

_log = logging.getLogger("noise_calibration")
_lock = threading.Lock()
_sent: OrderedDict[str, set] = OrderedDict()


class NodeText(list):
    """What a patch node shows after a run: the warnings (this list, one text
    each) and `calibrated`, the sizes calibrated for its checkpoint
    (noisecal_host/calibrations.py; None until a patch has read them)."""

    calibrated: dict | None = None


def executing() -> tuple[str | None, str | None]:
    """(prompt id, node id) of the node ComfyUI is running now, else (None, None)."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:  # hosts before the execution context, or no ComfyUI at all
        return None, None
    context = get_executing_context()
    if context is None:
        return None, None
    return getattr(context, "prompt_id", None), getattr(context, "node_id", None)


def _server():
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def _first_time(prompt_id, node_id, message_id: str, subject: str) -> bool:
    key = str(prompt_id)
    with _lock:
        seen = _sent.get(key)
        if seen is None:
            seen = _sent[key] = set()
            while len(_sent) > MAX_PROMPTS:
                _sent.popitem(last=False)
        if (node_id, message_id, subject) in seen:
            return False
        seen.add((node_id, message_id, subject))
        return True


def gui_text(text: str) -> str:
    """`text` as the GUI shows it (a toast, a node's text): plain text, without
    markdown backticks and without a trailing newline. Logs keep the text as it is."""
    return str(text).replace("`", "").rstrip()


def send(
    message_id: str,
    text: str,
    level: str = "warning",
    node: str | None = None,
    what: str = "",
    subject: str = "",
) -> bool:
    """Send `text` to the frontend (once per prompt, node, id and subject) as
    gui_text; True when sent. node: the node id it names (default: the node
    executing now)."""
    _check_id(message_id)
    server = _server()
    if server is None:
        return False
    text = gui_text(text)
    prompt_id, current = executing()
    node = node if node is not None else current
    if prompt_id is None:
        prompt_id = getattr(server, "last_prompt_id", None)
    if not _first_time(prompt_id, node, message_id, subject):
        return False
    data = {
        "id": message_id,
        "subject": subject,
        "text": text,
        "level": level,
        "node": node,
        "prompt_id": prompt_id,
        "what": what,
    }
    try:
        server.send_sync(EVENT, data, getattr(server, "client_id", None))
    except Exception:  # a message must never break sampling
        _log.debug("could not send a message to the frontend", exc_info=True)
        return False
    return True


def _check_id(message_id: str) -> None:
    if message_id not in IDS:
        raise ValueError(f"unknown message id {message_id!r}")


def _log_warning(log, message_id: str, text: str) -> None:
    _check_id(message_id)
    (log or _log).warning(text, extra={"message_id": message_id})


def warn(
    message_id: str, text: str, log: logging.Logger | None = None, what: str = "", subject=""
) -> None:
    """Log a warning (its record carries `message_id`) and send it to the frontend."""
    _log_warning(log, message_id, text)
    send(message_id, text, "warning", what=what, subject=subject)


def note(notes, message_id: str, text: str, subject: str = "") -> None:
    """A warning the user must see: logged, sent to the frontend (a toast) and shown
    on the node through `notes` (a list the node prints; None: none)."""
    warn(message_id, text, subject=subject)
    if notes is not None:
        notes.append(gui_text(text))


def warner(log: logging.Logger | None = None, what: str = ""):
    """A warn(message_id, text) for later (sampling time) that names the node
    executing now."""
    _, node = executing()

    def warn_later(message_id: str, text: str, subject: str = "") -> None:
        _log_warning(log, message_id, text)
        send(message_id, text, "warning", node=node, what=what, subject=subject)

    return warn_later
