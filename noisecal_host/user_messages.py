"""Warnings a user must see, sent to ComfyUI's frontend as well as logged.

The pack's web extension (web/js/noise_calibration.js) shows each message as a
toast naming the node it came from. A message goes to the client that queued
the prompt (`PromptServer.instance.client_id`, all clients when none) as the
event EVENT with {"text", "level", "node", "prompt_id", "what"}.

Without a server (the command line, tests, the snapshot host) nothing is sent
and nothing fails: `send` only logs. The same text for the same node is sent
once per prompt, however many sampling steps or sizes repeat it.

`warner(log)` is what a patch built in a node keeps for sampling time: it
remembers the node that built it (sampling runs while the sampler node is the
one executing), so the toast names the NoiseShift node, not the KSampler.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

EVENT = "noise_calibration.message"
MAX_PROMPTS = 32  # prompts whose sent messages are remembered for deduplication

_log = logging.getLogger("noise_calibration")
_lock = threading.Lock()
_sent: OrderedDict[str, set] = OrderedDict()


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


def _topic(text: str) -> str:
    """What a message is about: the node's pass-through warning at the node and the
    sampler's for one size are one message to the user."""
    head = text.split(":", 1)[0]
    return head if head.endswith("passes through") else text


def _first_time(prompt_id, node_id, text: str) -> bool:
    key = str(prompt_id)
    text = _topic(text)
    with _lock:
        seen = _sent.get(key)
        if seen is None:
            seen = _sent[key] = set()
            while len(_sent) > MAX_PROMPTS:
                _sent.popitem(last=False)
        if (node_id, text) in seen:
            return False
        seen.add((node_id, text))
        return True


def gui_text(text: str) -> str:
    """`text` as the GUI shows it (a toast, a node's text): plain text, without
    markdown backticks and without a trailing newline. Logs keep the text as it is."""
    return str(text).replace("`", "").rstrip()


def send(text: str, level: str = "warning", node: str | None = None, what: str = "") -> bool:
    """Send `text` to the frontend (once per prompt and node) as gui_text; True when
    sent. node: the node id it names (default: the node executing now)."""
    server = _server()
    if server is None:
        return False
    text = gui_text(text)
    prompt_id, current = executing()
    node = node if node is not None else current
    if prompt_id is None:
        prompt_id = getattr(server, "last_prompt_id", None)
    if not _first_time(prompt_id, node, text):
        return False
    data = {"text": text, "level": level, "node": node, "prompt_id": prompt_id, "what": what}
    try:
        server.send_sync(EVENT, data, getattr(server, "client_id", None))
    except Exception:  # a message must never break sampling
        _log.debug("could not send a message to the frontend", exc_info=True)
        return False
    return True


def warn(text: str, log: logging.Logger | None = None, what: str = "") -> None:
    """Log a warning and send it to the frontend."""
    (log or _log).warning(text)
    send(text, "warning", what=what)


def note(notes, text: str) -> None:
    """A warning the user must see: logged, sent to the frontend (a toast) and shown
    on the node through `notes` (a list the node prints; None: none)."""
    warn(text)
    if notes is not None:
        notes.append(gui_text(text))


def warner(log: logging.Logger | None = None, what: str = ""):
    """A warn(text) for later (sampling time) that names the node executing now."""
    _, node = executing()

    def warn_later(text: str) -> None:
        (log or _log).warning(text)
        send(text, "warning", node=node, what=what)

    return warn_later
