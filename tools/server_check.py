"""Check the pack through a running ComfyUI server's HTTP API (standard library only).

    python tools/server_check.py --server http://127.0.0.1:8188 [--check NAME ...]

Each check is one function that builds API-format graphs (POST /prompt), waits
for them (GET /history/<prompt_id>) and returns what it saw; add a check by
writing a function and listing it in CHECKS. Everything the checks write is
named with the run's label ("server-check" by default): at the end the
calibration files whose names contain it are deleted from the server's
noise_calibration folders (found through GET /internal/folder_paths, so this
cleanup needs the server on this machine), with the self-generated calibration
sets cached beside them, and so is the uploaded calibration latent when its
bytes are still the ones uploaded. See docs/server-check.md.

The reference model has no text encoder: sampling graphs take their
conditioning from the pack's Empty Conditioning node (`--conditioning-node`,
a node with one MODEL input and a CONDITIONING output), used as positive and
negative.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import random
import re
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

REFERENCE_MODEL = "sd3_gaussian_field_m32.safetensors"
REFERENCE_NATIVE = 256  # pixels: the reference model is trained on 32x32 latents
CALIBRATION_FOLDER = "noise_calibration"  # the pack's folder_paths name
GENERATED_FOLDER = "generated"  # self-generated calibration sets, inside it
PACK_ERROR_MODULE = "noise_calibration"  # exception_type prefix of the pack's errors
PACK_NODE_PREFIX = "NoiseCalibration"
EMPTY_CONDITIONING = "NoiseCalibrationEmptyConditioning"
# SD3 latent format (comfy.latent_formats.SD3): LATENT = field / scale + shift
SD3_SCALE, SD3_SHIFT = 1.5305, 0.0609
LATENT_CHANNELS = 16
# the reference model's training field (models/reference/sd3_gaussian_field_m32.json)
FIELD_F0, FIELD_ALPHA = 3.0, 2.5


# --------------------------------------------------------------------------- HTTP client


class ServerError(RuntimeError):
    pass


@dataclass
class Run:
    """One submitted graph and what the server answered."""

    prompt_id: str | None
    status: str  # "success", "error" (execution_error), "invalid" (refused by /prompt), "timeout"
    client_s: float  # submit -> result seen, measured here
    server_s: float | None = None  # execution_start -> end, from the server's timestamps
    error: dict = field(default_factory=dict)  # execution_error data or /prompt's answer
    outputs: dict = field(default_factory=dict)  # node id -> ui dict
    cached: list = field(default_factory=list)  # node ids the server did not re-run

    @property
    def error_text(self) -> str:
        if self.status == "error":
            return str(self.error.get("exception_message", "")).strip()
        if self.status == "invalid":
            return json.dumps(self.error, indent=1)
        return ""


class Client:
    def __init__(self, server: str, timeout: float, poll: float = 0.25):
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.poll = poll
        self.client_id = uuid.uuid4().hex

    def _request(self, path: str, data: bytes | None = None, headers=None):
        req = urllib.request.Request(self.server + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, body.decode("utf-8", "replace")
        except urllib.error.URLError as e:
            raise ServerError(f"{self.server}{path}: {e.reason}") from e
        return 200, json.loads(body) if body.strip() else None

    def get(self, path: str):
        code, body = self._request(path)
        if code != 200:
            raise ServerError(f"GET {path}: HTTP {code}: {body}")
        return body

    def post(self, path: str, payload):
        data = json.dumps(payload).encode()
        return self._request(path, data, {"Content-Type": "application/json"})

    def upload_input(self, name: str, content: bytes) -> str:
        """Put a file into the server's input folder (POST /upload/image takes any bytes)."""
        boundary = uuid.uuid4().hex
        parts = []
        for key, value in (("type", "input"), ("overwrite", "true")):
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
            )
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        body = (
            "".join(parts).encode() + head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
        )
        code, answer = self._request(
            "/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        if code != 200:
            raise ServerError(f"upload of {name}: HTTP {code}: {answer}")
        return answer["name"]

    def run(self, graph: dict) -> Run:
        """Submit an API-format graph and wait for its history entry."""
        start = time.monotonic()
        code, answer = self.post("/prompt", {"prompt": graph, "client_id": self.client_id})
        if code != 200 or "prompt_id" not in (answer or {}):
            return Run(None, "invalid", time.monotonic() - start, error=answer or {})
        prompt_id = answer["prompt_id"]
        deadline = start + self.timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)
            status = (entry or {}).get("status") or {}
            if status.get("completed") or status.get("status_str") == "error":
                return self._result(prompt_id, entry, time.monotonic() - start)
            time.sleep(self.poll)
        # ours only: a targeted interrupt, and out of the queue if it never started
        self.post("/interrupt", {"prompt_id": prompt_id})
        self.post("/queue", {"delete": [prompt_id]})
        return Run(prompt_id, "timeout", time.monotonic() - start)

    @staticmethod
    def _result(prompt_id: str, entry: dict, client_s: float) -> Run:
        status = entry["status"]
        events = dict((name, data) for name, data in status.get("messages", []))
        began = events.get("execution_start", {}).get("timestamp")
        ended = next(
            (
                events[k].get("timestamp")
                for k in ("execution_success", "execution_error", "execution_interrupted")
                if k in events
            ),
            None,
        )
        server_s = (ended - began) / 1000 if began is not None and ended is not None else None
        return Run(
            prompt_id,
            "error" if status.get("status_str") == "error" else "success",
            client_s,
            server_s,
            error=events.get("execution_error") or events.get("execution_interrupted") or {},
            outputs=entry.get("outputs", {}),
            cached=events.get("execution_cached", {}).get("nodes", []),
        )


# --------------------------------------------------------------------------- graphs


class Graph:
    """An API-format graph: add() returns the node id; out(id, slot) links to an output."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    @staticmethod
    def out(node_id: str, slot: int = 0) -> list:
        return [node_id, slot]


def load_model(g: Graph, opts) -> list:
    return g.out(g.add("UNETLoader", unet_name=opts.model, weight_dtype="default"))


def noiseshift(g: Graph, model: list, label: str, if_missing: str = "error", strength=1.0):
    node = g.add(
        "NoiseCalibrationNoiseShift",
        model=model,
        strength=strength,
        if_missing=if_missing,
        label=label,
    )
    return g.out(node)


def conditioning(g: Graph, model: list, opts) -> list:
    """Positive = negative (cfg 1): the model's zero conditioning."""
    return g.out(g.add(opts.conditioning_node, model=model))


def ksample(g: Graph, model: list, opts, *, seed: int) -> str:
    """EmptySD3LatentImage -> KSampler (euler, simple, cfg 1) -> PreviewAny."""
    cond = conditioning(g, model, opts)
    latent = g.add("EmptySD3LatentImage", width=opts.size, height=opts.size, batch_size=1)
    sampled = g.add(
        "KSampler",
        model=model,
        seed=seed,
        steps=opts.steps,
        cfg=1.0,
        sampler_name="euler",
        scheduler="simple",
        positive=cond,
        negative=cond,
        latent_image=g.out(latent),
        denoise=1.0,
    )
    return g.add("PreviewAny", source=g.out(sampled))


def calibrate_inputs(opts, *, label: str, seed: int, **more) -> dict:
    """The Calibrate node's widgets (fast search, simple schedule, no correction)."""
    return {
        "steps": opts.steps,
        "scheduler": "simple",
        "search_mode": "fast",
        "sample_count": opts.samples,
        "seed": seed,
        "width": opts.size,
        "height": opts.size,
        "label": label,
        "max_batch": 32,
        "correction": "off",
        **more,
    }


def calibrate(g: Graph, model: list, latent_file: str, opts, *, label: str, seed: int) -> str:
    latent = g.add("LoadLatent", latent=latent_file)
    inputs = calibrate_inputs(opts, label=label, seed=seed, data="connected")
    return g.add("NoiseCalibrationCalibrate", model=model, latent=g.out(latent), **inputs)


def self_calibrate(g: Graph, model: list, opts, *, label: str, seed: int) -> str:
    """Calibrate with nothing connected: the model samples its own calibration set at
    its native size (--native), resized in latent space to the target (no VAE)."""
    inputs = calibrate_inputs(
        opts,
        label=label,
        seed=seed,
        mode="reuse",
        data="self-generate",
        generation_steps=opts.steps,
        generation_cfg=1.0,
        generation_sampler="euler",
        generation_scheduler="simple",
        native_width=opts.native,
        native_height=opts.native,
    )
    return g.add("NoiseCalibrationCalibrate", model=model, **inputs)


# --------------------------------------------------------------------------- calibration data


def field_latents(side: int, count: int, seed: int) -> list[float]:
    """`count` Gaussian-field latents [count, 16, side, side], flattened: the spectrum of
    noisecal.testing.testbed.sample_field (S(f) = (f0^2 + f^2)^(-alpha/2), unit per-pixel
    variance) drawn with this module's RNG (same law, not the pack's torch draw),
    mapped to LATENT space as the reference model's data (x / scale + shift)."""
    freqs = [k if k < side - k else k - side for k in range(side)]  # fftfreq * n
    dens = [[(FIELD_F0**2 + a * a + b * b) ** (-FIELD_ALPHA / 2) for b in freqs] for a in freqs]
    norm = sum(map(sum, dens)) / side**2
    amp = [[math.sqrt(v / norm) for v in row] for row in dens]
    # real, symmetric filter: field = white (circularly) convolved with kernel
    kernel = [
        [
            sum(
                amp[a][b] * math.cos(2 * math.pi * (a * dy + b * dx) / side)
                for a in range(side)
                for b in range(side)
            )
            / side**2
            for dx in range(side)
        ]
        for dy in range(side)
    ]
    rows = [
        [kernel[(y - sy) % side][(x - sx) % side] for sy in range(side) for sx in range(side)]
        for y in range(side)
        for x in range(side)
    ]
    rng = random.Random(seed)
    values: list[float] = []
    for _ in range(count * LATENT_CHANNELS):
        white = [rng.gauss(0.0, 1.0) for _ in range(side * side)]
        values += [sum(map(float.__mul__, white, row)) / SD3_SCALE + SD3_SHIFT for row in rows]
    return values


def latent_file_bytes(values: list[float], shape: list[int]) -> bytes:
    """A .latent file as LoadLatent reads it: safetensors with `latent_tensor` and the
    `latent_format_version_0` marker (without it LoadLatent rescales by 1/0.18215)."""
    data = array.array("f", values)
    if sys.byteorder != "little":
        data.byteswap()
    raw = data.tobytes()
    header = {
        "latent_tensor": {"dtype": "F32", "shape": shape, "data_offsets": [0, len(raw)]},
        "latent_format_version_0": {
            "dtype": "F32",
            "shape": [0],
            "data_offsets": [len(raw), len(raw)],
        },
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw


# --------------------------------------------------------------------------- checks


@dataclass
class Context:
    client: Client
    opts: argparse.Namespace
    seed: int  # per run, so the server re-runs cached nodes (a cached Calibrate writes nothing)
    uploaded: dict = field(default_factory=dict)  # input file name -> bytes
    written: list = field(default_factory=list)  # calibration files the server reported


@dataclass
class Outcome:
    ok: bool
    lines: list[str]


def describe(name: str, run: Run) -> list[str]:
    server = f"{run.server_s:.2f} s" if run.server_s is not None else "-"
    lines = [f"{name}: {run.status}, {run.client_s:.2f} s at the client, {server} on the server"]
    if run.cached:
        lines.append(f"  cached nodes (not re-run): {', '.join(run.cached)}")
    if run.status == "error":
        lines.append(
            f"  execution_error in node {run.error.get('node_id')} "
            f"({run.error.get('node_type')}), {run.error.get('exception_type')}:"
        )
        lines += ["  | " + line for line in run.error_text.splitlines()]
    elif run.status == "invalid":
        lines += ["  | " + line for line in run.error_text.splitlines()]
    elif run.status == "timeout":
        lines.append("  no result within --timeout: interrupted and taken off the queue")
    return lines


def pack_error(run: Run) -> bool:
    return run.status == "error" and str(run.error.get("exception_type", "")).startswith(
        PACK_ERROR_MODULE
    )


def ui_text(run: Run) -> list[str]:
    """The lines of the text the nodes showed (the Calibrate node's summary)."""
    texts = [str(t) for ui in run.outputs.values() for t in ui.get("text", [])]
    return [line for t in texts for line in t.splitlines()]


def note_files(ctx: Context, lines: list[str]) -> None:
    """Remember the calibration files a Calibrate node names ("wrote/reused <path>")."""
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        if word in ("wrote", "reused") and rest.endswith(".json"):
            ctx.written.append(rest.strip())


def evaluations(lines: list[str]) -> int | None:
    """The network evaluations a Calibrate run reports (0 for "no network evaluation")."""
    for line in lines:
        if line.startswith("this run: no network evaluation"):
            return 0
        found = re.match(r"this run: (\d+) network evaluations", line)
        if found:
            return int(found.group(1))
    return None


def check_missing(ctx: Context) -> Outcome:
    """NoiseShift (if_missing error) under a label nothing was calibrated for: the
    client must get the pack's own error, raised in the pack's node."""
    g = Graph()
    model = noiseshift(g, load_model(g, ctx.opts), f"{ctx.opts.label}-missing")
    ksample(g, model, ctx.opts, seed=ctx.seed)
    run = ctx.client.run(g.nodes)
    lines = describe("sampling without a calibration", run)
    node_type = str(run.error.get("node_type", ""))
    if run.status == "error":
        lines.append(f"  the error names node {run.error.get('node_id')} ({node_type})")
    ok = pack_error(run) and node_type.startswith(PACK_NODE_PREFIX)
    if not pack_error(run):
        lines.append("  expected: an execution_error raised by the pack (noise_calibration.*)")
    elif not ok:
        lines.append(f"  expected: the error in the pack's node, not in {node_type}")
    return Outcome(ok, lines)


def check_self_calibrate(ctx: Context) -> Outcome:
    """Calibrate with no data connected (self-generation at --native px, brought to
    --size), under the run's label; the same graph again with a new seed, which must
    reuse the file without a network evaluation; then NoiseShift sampling that must
    find the file, and plain sampling for comparison."""
    opts, label = ctx.opts, ctx.opts.label
    lines: list[str] = []
    ok = True
    runs = (("self-calibration", ctx.seed, False), ("the same again, new seed", ctx.seed + 1, True))
    for name, seed, reuse in runs:
        g = Graph()
        self_calibrate(g, load_model(g, opts), opts, label=label, seed=seed)
        cal = ctx.client.run(g.nodes)
        text = ui_text(cal)
        note_files(ctx, text)
        lines += describe(
            f"{name} ({opts.native} px generated -> {opts.size} px, seed {seed})", cal
        )
        lines += ["  ui text | " + line for line in text]
        if cal.status != "success":
            return Outcome(False, lines)
        count = evaluations(text)
        if reuse and not (text[:1] and text[0].startswith("reused ") and count == 0):
            lines.append("  expected: 'reused ...' and no network evaluation")
            ok = False
        if not reuse and not (text[:1] and text[0].startswith("wrote ") and count):
            lines.append("  expected: a file written after network evaluations")
            ok = False
    for name, strength in (("NoiseShift sampling", 1.0), ("plain sampling (strength 0)", 0.0)):
        g = Graph()
        model = noiseshift(g, load_model(g, opts), label, strength=strength)
        ksample(g, model, opts, seed=ctx.seed)
        run = ctx.client.run(g.nodes)
        lines += describe(name, run)
        ok = ok and run.status == "success"
    return Outcome(ok, lines)


def upload_field_latents(ctx: Context) -> str:
    side = ctx.opts.size // 8
    name = f"{ctx.opts.label}_field_{side}x{side}.latent"
    content = latent_file_bytes(
        field_latents(side, ctx.opts.samples, ctx.opts.data_seed),
        [ctx.opts.samples, LATENT_CHANNELS, side, side],
    )
    stored = ctx.client.upload_input(name, content)
    ctx.uploaded[stored] = content
    return stored


def check_latent(ctx: Context) -> Outcome:
    """Calibrate from a LATENT of Gaussian-field data (label <label>-latent), then
    NoiseShift sampling that must find the file; a new noise seed; a plain run."""
    t0 = time.monotonic()
    label = f"{ctx.opts.label}-latent"
    latent_file = upload_field_latents(ctx)
    lines = [f"calibration latents: {latent_file} ({time.monotonic() - t0:.2f} s to make)"]
    g = Graph()
    calibrate(g, load_model(g, ctx.opts), latent_file, ctx.opts, label=label, seed=ctx.seed)
    cal = ctx.client.run(g.nodes)
    lines += describe(f"calibrate {ctx.opts.size}x{ctx.opts.size} px, {ctx.opts.steps} steps", cal)
    text = ui_text(cal)
    note_files(ctx, text)
    lines += ["  ui text | " + line for line in text]
    if cal.status != "success":
        return Outcome(False, lines)
    ok = True
    runs = (  # the second: only KSampler re-runs (the NoiseShift node is cached)
        ("NoiseShift sampling", 1.0, ctx.seed),
        ("NoiseShift sampling, new noise seed", 1.0, ctx.seed + 1),
        ("plain sampling (NoiseShift strength 0)", 0.0, ctx.seed),
    )
    for name, strength, seed in runs:
        g = Graph()
        model = noiseshift(g, load_model(g, ctx.opts), label, strength=strength)
        ksample(g, model, ctx.opts, seed=seed)
        run = ctx.client.run(g.nodes)
        lines += describe(name, run)
        ok = ok and run.status == "success"
    return Outcome(ok, lines)


CHECKS: dict[str, Callable[[Context], Outcome]] = {
    "missing": check_missing,
    "self-calibrate": check_self_calibrate,
    "latent": check_latent,
}


# --------------------------------------------------------------------------- cleanup


def cleanup(ctx: Context) -> list[str]:
    """Delete calibration files named with the label, and our uploaded latent."""
    lines = []
    label = ctx.opts.label
    # a labelled file's name carries the label's slug (noisecal.checkpoint_key.CheckpointKey.file_stem)
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40]
    try:
        paths = ctx.client.get("/internal/folder_paths")
    except ServerError as e:
        return [f"cleanup skipped: {e}"]
    folders = paths.get(CALIBRATION_FOLDER, [])
    # and the self-generated calibration sets the Calibrate node caches beside the files
    folders += [os.path.join(f, GENERATED_FOLDER) for f in folders]
    for folder in folders:
        if not os.path.isdir(folder):  # not made yet, or not on this machine
            continue
        for name in sorted(os.listdir(folder)):
            if (label in name or slug in name) and os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
                lines.append(f"deleted {os.path.join(folder, name)}")
    # the input folder is not listed there: ComfyUI's default <base>/input, where
    # <base> holds custom_nodes; deleted only when it still holds our exact bytes
    for base in {os.path.dirname(p) for p in paths.get("custom_nodes", [])}:
        for name, content in ctx.uploaded.items():
            path = os.path.join(base, "input", name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    same = f.read() == content
                if same:
                    os.remove(path)
                    lines.append(f"deleted {path}")
    deleted = {line.removeprefix("deleted ") for line in lines}
    left = sorted(set(ctx.written) - deleted)
    lines += [f"not found on this machine, left on the server: {p}" for p in left]
    return lines


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="http://127.0.0.1:8188")
    p.add_argument("--check", action="append", choices=list(CHECKS), help="default: all")
    p.add_argument("--model", default=REFERENCE_MODEL, help="a UNETLoader file name")
    p.add_argument("--label", default="server-check", help="names what the run writes")
    p.add_argument(
        "--conditioning-node",
        default=EMPTY_CONDITIONING,
        help="node id (MODEL in, CONDITIONING out) for the sampling graphs",
    )
    p.add_argument("--size", type=int, default=128, help="pixels (square)")
    p.add_argument(
        "--native",
        type=int,
        default=REFERENCE_NATIVE,
        help="pixels (square) the Calibrate node self-generates at",
    )
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--samples", type=int, default=16, help="calibration latents")
    p.add_argument("--data-seed", type=int, default=10_000)
    p.add_argument("--seed", type=int, help="default: new per run (defeats the node cache)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per graph")
    p.add_argument("--keep", action="store_true", help="do not delete what the run wrote")
    opts = p.parse_args(argv)

    client = Client(opts.server, opts.timeout)
    try:
        stats = client.get("/system_stats")["system"]
        nodes = client.get("/object_info")
    except ServerError as e:
        print(f"server not reachable: {e}")
        return 2
    ours = sorted(k for k in nodes if k.startswith("NoiseCalibration"))
    print(f"ComfyUI {stats.get('comfyui_version')}, torch {stats.get('pytorch_version')}")
    print(f"pack nodes: {', '.join(ours) or 'NONE (the pack did not load)'}")
    if not ours:
        return 1
    if opts.conditioning_node not in nodes:
        print(f"--conditioning-node {opts.conditioning_node}: no such node on the server")
        return 2
    seed = opts.seed if opts.seed is not None else int(time.time()) % 1_000_000
    ctx = Context(client, opts, seed)
    if not opts.keep:  # leftovers of an earlier --keep run would satisfy "missing"
        leftovers = cleanup(ctx)
        if leftovers:
            print("\n== leftovers of an earlier run\n" + "\n".join(leftovers))
    failed = []
    try:
        for name in opts.check or list(CHECKS):
            print(f"\n== {name} (seed {seed})")
            try:
                outcome = CHECKS[name](ctx)
            except ServerError as e:
                outcome = Outcome(False, [f"server error: {e}"])
            print("\n".join(outcome.lines))
            print(f"-> {'PASS' if outcome.ok else 'FAIL'}")
            if not outcome.ok:
                failed.append(name)
    finally:
        if not opts.keep:
            print("\n== cleanup")
            print("\n".join(cleanup(ctx)) or "nothing to delete")
    print(f"\n{len(ctx.opts.check or CHECKS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
