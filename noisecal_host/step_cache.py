"""Notice, at sampling time, a step cache (core EasyCache or LazyCache) on a
model the pack patched.

A step cache skips network calls and adds, instead, the output change it saw
at an earlier step. At a skipped step the level the pack tells the network
has no effect, and guidance's extra branch (the conditional entry at another
level) shares the conditional entry's cache slot, so the cache can hand a
later step the output of that other level. Both run without an error; the
result is neither the pack's nor the cache's, so the user is told.

Both core caches keep their state in model_options["transformer_options"]
["easycache"] (LazyCache too) and register wrappers under "easycache" or
"lazycache"; either mark is enough.
"""

from __future__ import annotations

from collections import OrderedDict

HOLDER_KEY = "easycache"
WRAPPER_KEYS = {"easycache": "EasyCache", "lazycache": "LazyCache"}
MAX_REMEMBERED = 64  # sampling runs whose warning is remembered

_warned: OrderedDict[tuple[int, str], object] = OrderedDict()


def _wrapper_cache(options: dict) -> tuple[str, object] | None:
    for by_key in (options.get("wrappers") or {}).values():
        for key, name in WRAPPER_KEYS.items():
            if key in by_key:
                return name, by_key
    return None


def find(model_options: dict) -> tuple[str, object] | None:
    """(name, object that identifies this sampling run's cache) or None."""
    options = model_options.get("transformer_options") or {}
    holder = options.get(HOLDER_KEY)
    if holder is not None:
        # the cache clones its holder per run: one warning per run
        return getattr(holder, "name", "EasyCache"), holder
    return _wrapper_cache(options)


def message(what: str, name: str) -> str:
    return (
        f"{what} does not compose with {name}: at the steps {name} skips it reuses "
        f"the network's output from an earlier step, so the noise level this node tells "
        f"the network has no effect there (and guidance's extra branch can end up in the "
        f"cache). Sampling goes on with both; remove {name} for this node's result, or "
        f"bypass this node for {name}'s speed-up."
    )


def first_time(token: object, what: str) -> bool:
    """True once per (cache run, pack node); the token is kept so its id stays unique."""
    key = (id(token), what)
    if key in _warned:
        return False
    _warned[key] = token
    while len(_warned) > MAX_REMEMBERED:
        _warned.popitem(last=False)
    return True


def check(model_options: dict, what: str, warn) -> None:
    """Warn (once per sampling run and pack node) when a step cache is on the model."""
    found = find(model_options)
    if found is not None and first_time(found[1], what):
        warn(message(what, found[0]))
