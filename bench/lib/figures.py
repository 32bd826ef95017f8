"""The benchmarks' figures (PNG files next to their JSON), drawn from a run's results
dict: the shared parts (off-screen pyplot, a grid of panels, FD bars with the floor,
sigma_hat against sigma, one legend under the figure) and one function a figure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FD_SERIES = (("fd_plain", "plain"), ("fd_noiseshift", "NoiseShift"), ("fd_native", "native"))


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return path


def grid(count: int, ncols: int, size: tuple[float, float]):
    """A figure of `count` panels in rows of `ncols` (the unused ones hidden):
    (figure, panels in reading order)."""
    nrows = math.ceil(count / ncols)
    fig, axes = pyplot().subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.axis("off")
    return fig, flat[:count]


def legend_below(fig, axes, ncol: int, fontsize: float, bottom: float) -> None:
    """One legend under the panels (each label once), then the layout above it."""
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=ncol, fontsize=fontsize)
    fig.tight_layout(rect=(0, bottom, 1, 1))


def plain_log_axes(ax) -> None:
    """Log axes labelled with plain numbers."""
    import matplotlib.ticker

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def step_axis(ax, steps, base: int = 2) -> None:
    """A log x axis of step counts, each labelled."""
    import matplotlib.ticker

    ax.set_xscale("log", base=base)
    ax.set_xticks(steps)
    ax.set_xticklabels([str(s) for s in steps])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def fd_bars(ax, cases, labels, title: str, series=FD_SERIES) -> None:
    """Grouped FD bars per case (log scale) with the FD floor as a dash."""
    x = list(range(len(cases)))
    width = 0.8 / len(series)
    for k, (key, name) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        vals = [c[key] if c[key] is not None else float("nan") for c in cases]
        ax.bar([i + offset for i in x], vals, width, label=name)
    if cases and "fd_floor" in cases[0]:
        ax.scatter(
            x, [c["fd_floor"] for c in cases], color="k", marker="_", s=300, label="FD floor"
        )
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("FD to the true field")
    ax.set_title(title, fontsize=9)


def sigma_hat_panels(top, bottom, cases, hi: float = 1.0) -> None:
    """sigma_hat (top) and sigma_hat - sigma (bottom) against sigma, a line per N."""
    top.plot([0, hi], [0, hi], color="0.6", linestyle="--", label="identity")
    bottom.axhline(0.0, color="0.6", linestyle="--")
    for c in cases:
        shift = [h - s for s, h in zip(c["sigmas"], c["sigma_hat"], strict=True)]
        top.plot(c["sigmas"], c["sigma_hat"], marker="o", ms=3, label=f"N={c['N']}")
        bottom.plot(c["sigmas"], shift, marker="o", ms=3, label=f"N={c['N']}")
    top.set_ylabel("sigma_hat")
    bottom.set_xlabel("sigma")
    bottom.set_ylabel("sigma_hat - sigma")
    top.legend(fontsize=8)


# --------------------------------------------------------------------------- noiseshift.py


def noiseshift(run, m: int, settings: str, cal: str) -> list[Path]:
    written = []
    cases = run.data.get("quality")
    if cases:
        groups = list(dict.fromkeys((c["spectrum"], c["variant"]) for c in cases))
        fig, axes = pyplot().subplots(2, len(groups), figsize=(4 * len(groups), 7), squeeze=False)
        for j, g in enumerate(groups):
            rows = [c for c in cases if (c["spectrum"], c["variant"]) == g]
            sigma_hat_panels(axes[0][j], axes[1][j], rows)
            axes[0][j].set_title(f"{g[0]}, {g[1]} (M={m})")
        fig.tight_layout()
        written.append(save(fig, run.out / "noiseshift_sigma_hat.png"))
        fig, ax = pyplot().subplots(figsize=(max(8, 0.9 * len(cases)), 4.5))
        labels = [f"{c['spectrum']}\n{c['variant']} N={c['N']}" for c in cases]
        fd_bars(ax, cases, labels, f"Testbed FD, {settings}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(save(fig, run.out / "noiseshift_fd.png"))
    if run.data.get("transfer"):
        written.append(noiseshift_transfer(run, m, cal))
    return written


def noiseshift_transfer(run, m: int, cal: str) -> Path:
    tr = run.data["transfer"]
    panels = list(dict.fromkeys((c["spectrum"], c["variant"], c["N"]) for c in tr))
    ncols = min(4, len(panels))
    fig, axes = grid(len(panels), ncols, (4.2, 3.6))
    series = (
        ("fd_plain", "plain"),
        ("fd_noiseshift", f"NoiseShift ({cal} cal)"),
        ("fd_recalibrated", "NoiseShift (recal)"),
        ("fd_native", "native"),
    )
    for j, (key, ax) in enumerate(zip(panels, axes, strict=True)):
        rows = [c for c in tr if (c["spectrum"], c["variant"], c["N"]) == key]
        fd_bars(
            ax, rows, [c["applied_at"] for c in rows], f"{key[0]}, {key[1]}, N={key[2]}", series
        )
        if j % ncols:
            ax.set_ylabel("")
    fig.suptitle(f"Transfer of the {cal} Euler calibration (M={m})")
    legend_below(fig, axes[:1], 4, 8, 0.06)
    return save(fig, run.out / "noiseshift_transfer_fd.png")


# --------------------------------------------------------------------------- reference.py


def reference(run, settings: str) -> list[Path]:
    cases, ref = run.data["cases"], run.data["reference"]
    fig, (top, bottom) = pyplot().subplots(2, 1, figsize=(6.5, 7), sharex=True)
    sigma_hat_panels(top, bottom, cases, max(max(c["sigmas"]) for c in cases))
    top.set_ylabel("sigma_hat (told to the network)")
    top.set_title(
        f"Reference SD3 (M={ref['train_res']}, shift {ref['shift']:g}): NoiseShift levels"
    )
    bottom.set_xlabel("sigma (trajectory)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    written = [save(fig, run.out / "reference_sigma_hat.png")]
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    fd_bars(ax, cases, [f"N={c['N']}" for c in cases], f"Reference SD3, {settings}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(save(fig, run.out / "reference_fd.png"))
    return written


# --------------------------------------------------------------------------- schedules.py


def schedules(run, core, default_variant: str, bound_start: str, shown_steps: int) -> list[Path]:
    cases = run.data.get("fd", [])
    if not cases:
        return []
    written = [schedules_fd(run, cases, core, default_variant, bound_start)]
    picks = [c for c in cases if c["steps"] == shown_steps and c["sampler"] == "euler"]
    if picks:
        written.append(schedules_sigmas(run, picks, core, default_variant, bound_start))
    return written


def schedules_fd(run, cases, core, default_variant: str, bound_start: str) -> Path:
    """FD against steps, one panel per spectrum, resolution and sampler."""
    samplers = run.cfg["samplers"]
    panels = list(dict.fromkeys((c["spectrum"], c["N"]) for c in cases))
    colors = pyplot().get_cmap("tab10")
    fig, axes = grid(len(panels) * len(samplers), len(samplers), (4.3, 3.4))
    for k, ((spectrum, n), sampler) in enumerate((p, s) for p in panels for s in samplers):
        ax = axes[k]
        rows = [c for c in cases if (c["spectrum"], c["N"]) == (spectrum, n)]
        rows = [c for c in rows if c["sampler"] == sampler]
        steps = [c["steps"] for c in rows]
        for i, name in enumerate(core):
            fd = [c["core"][name] for c in rows]
            ax.plot(steps, fd, color=colors(i), lw=1, marker=".", label=name)
        default = [c["fd_default"] for c in rows]
        ax.plot(
            steps, default, color="k", lw=2.2, marker="o", label=f"spectral ({default_variant})"
        )
        bound = [c["fd_bound"] for c in rows]
        ax.plot(
            steps, bound, color="0.5", lw=1.6, marker="o", ms=3, label=f"spectral, {bound_start}"
        )
        if rows and rows[0]["fd_oracle"] is not None:
            oracle = [c["fd_oracle"] for c in rows]
            ax.plot(steps, oracle, color="k", ls="--", lw=1, label="oracle (FD-optimal)")
        step_axis(ax, steps)
        ax.set_yscale("log")
        ax.set_title(f"{spectrum}, N={n}, {sampler}", fontsize=9)
        ax.set_ylabel("exact FD" if k % len(samplers) == 0 else "")
        if k >= len(axes) - len(samplers):
            ax.set_xlabel("steps")
    fig.suptitle(f"Testbed FD vs steps (model trained at M={run.cfg['resolutions'][0]})")
    legend_below(fig, axes[:1], 5, 8, 0.05)
    return save(fig, run.out / "schedules_fd.png")


def schedules_sigmas(run, picks, core, default_variant: str, bound_start: str) -> Path:
    """The schedules at the shown step count (top) and the calibration spectra (bottom)."""
    import matplotlib.ticker

    from noise_calibration.noisecal import spectral_schedule as ss

    colors = pyplot().get_cmap("tab10")
    fig, axes = pyplot().subplots(2, len(picks), figsize=(4.2 * len(picks), 7), squeeze=False)
    for j, c in enumerate(picks):
        ax = axes[0][j]
        for k, name in enumerate(core):
            ax.plot(c["sigmas_core"][name], color=colors(k), lw=1, marker=".", label=name)
        for v, ls in zip(ss.VARIANTS, ("-", "-.", ":", "--"), strict=False):
            lw = 2 if v == default_variant else 1
            ax.plot(c["sigmas_variants"][v], color="k", lw=lw, ls=ls, label=f"spectral {v}")
        ax.plot(c["sigmas_bound"], color="0.5", lw=1.5, label=f"spectral, {bound_start}")
        if c["sigmas_oracle"] is not None:
            ax.plot(
                c["sigmas_oracle"], color="m", lw=1.5, ls="--", label=f"oracle ({c['sampler']})"
            )
        ax.set_title(f"{c['spectrum']}, N={c['N']}: {c['steps']} steps", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("sigma")
        ax = axes[1][j]
        cell = next(
            x for x in run.data["cells"] if (x["spectrum"], x["N"]) == (c["spectrum"], c["N"])
        )
        st = cell["stats"]
        p = np.mean(np.array(st["power"]), axis=0)
        ax.loglog(st["freqs"][1:], p[1:], color="k")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("frequency (cycles/pixel)")
        ax.set_ylabel("RAPSD (channel mean)")
        s_min, s_max = cell["bounds_ref"]
        ax.set_title(
            f"bounds @{ss.REFERENCE_STEPS} steps: sigma in [{s_min:.3f}, {s_max:.3f}]", fontsize=9
        )
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, fontsize=6)
    fig.tight_layout()
    return save(fig, run.out / "schedules_sigmas.png")


# --------------------------------------------------------------------------- correction.py


def correction(run, methods, band: tuple[float, float], m: int) -> list[Path]:
    """FD ratio to plain against steps, one panel per spectrum and case, euler solid
    and heun dashed, the online source dotted."""
    cells = run.data.get("quality", [])
    if not cells:
        return []
    cfg = run.cfg
    panels = list(dict.fromkeys((c["spectrum"], c["case"]) for c in cells))
    ncols = len(cfg["cases"])
    fig, axes = grid(len(panels), ncols, (4.4, 3.6))
    online = {
        (c["spectrum"], c["case"], c["steps"]): c["ratio_online"]
        for c in run.data.get("online", {}).get("cells", [])
    }
    styles = {"euler": "-", "heun": "--"}
    for j, (panel, ax) in enumerate(zip(panels, axes, strict=True)):
        ax.axhline(1.0, color="0.5", linewidth=0.8)
        ax.axhspan(*band, color="0.9")
        for sampler in cfg["samplers"]:
            rows = [c for c in cells if (c["spectrum"], c["case"]) == panel]
            rows = [c for c in rows if c["sampler"] == sampler]
            for i, (key, name) in enumerate(methods):
                steps, ratios = [c["steps"] for c in rows], [c["ratio"][key] for c in rows]
                label = f"{name}, {sampler}"
                ax.plot(
                    steps, ratios, styles[sampler], color=f"C{i}", marker="o", ms=3, label=label
                )
        pts = sorted((s, v) for (sp, case, s), v in online.items() if (sp, case) == panel)
        if pts:
            label = "online apparent level, euler"
            ax.plot(*zip(*pts, strict=True), ":", color="k", marker="x", label=label)
        step_axis(ax, cfg["steps"], base=10)
        ax.set_yscale("log")
        ax.set_xlabel("steps")
        ax.set_title(f"{panel[0]}, {panel[1]}", fontsize=9)
        if j % ncols == 0:
            ax.set_ylabel("FD / FD plain")
    fig.suptitle(f"Noise Level Correction on the testbed (M={m}): FD ratio to plain")
    legend_below(fig, axes[:1], 4, 7, 0.12)
    return [save(fig, run.out / "correction_fd_ratio.png")]


# --------------------------------------------------------------------------- guidance.py


def guidance_sweep(run, sweep, panels, worse: float, geomean) -> Path:
    """Worst-cell against geometric-mean ratio of every candidate, per set of cells."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 4.5))
    colors = {"offset": "C0", "estimated": "C1", "pseudo-level": "C2"}
    markers = {"per step size": "o", "constant": "^"}
    for ax, (cells, title) in zip(axes, panels, strict=True):
        for c in sweep["candidates"]:
            r = [c["ratios"][k] for k in cells]
            color, marker = colors[c["mode"]], markers[c["schedule"]]
            ax.scatter(geomean(r), max(r), color=color, marker=marker, s=18)
        ax.axhline(worse, color="0.5", linestyle="--")
        ax.axvline(1.0, color="0.5", linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axes(ax)
        ax.set_xlabel("geometric-mean FD ratio (guided / off)")
        ax.set_ylabel("worst-cell FD ratio")
        ax.set_title(title, fontsize=9)
    handles = [
        plt.Line2D([], [], color=v, marker="o", linestyle="", label=k) for k, v in colors.items()
    ] + [plt.Line2D([], [], color="k", marker=v, linestyle="", label=k) for k, v in markers.items()]
    axes[0].legend(handles=handles, fontsize=8)
    fig.suptitle(f"Guidance sweep ({sweep['samples']} samples per cell)")
    fig.tight_layout()
    return save(fig, run.out / "guidance_sweep.png")


def guidance_finalists(run, cells, names: list[str], grid_: np.ndarray, worse: float) -> Path:
    """The finalists' ratio per cell, log2 colour scale; bold over `worse`."""
    fig, ax = pyplot().subplots(figsize=(max(8, 0.5 * len(cells)), 1.2 + 0.5 * len(grid_)))
    im = ax.imshow(np.log2(grid_), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    for (y, x), v in np.ndenumerate(grid_):
        weight = "bold" if v > worse else "normal"
        ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=6, fontweight=weight)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f"{a}, {c}" for a, c in cells], fontsize=6, rotation=90)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    fig.colorbar(im, ax=ax).set_label("log2 FD ratio to guidance off")
    ax.set_title(
        f"Finalists on the full set ({run.cfg['samples']} samples); bold: > {worse}x", fontsize=9
    )
    fig.tight_layout()
    return save(fig, run.out / "guidance_fd_ratio.png")


# --------------------------------------------------------------------------- self_calibration.py


def self_calibration(run, arms: dict) -> list[Path]:
    """RAPSD of each calibration set over the true data's, per spectrum and N."""
    panels, seen = [], set()
    for c in run.data.get("testbed", []):
        if (c["spectrum"], c["N"]) not in seen:
            seen.add((c["spectrum"], c["N"]))
            panels.append((f"testbed {c['spectrum']}, N={c['N']}", c["arms"]))
    if run.data.get("reference"):
        panels.append((f"reference, N={run.data['reference']['N']}", run.data["reference"]["arms"]))
    if not panels:
        return []
    ncols = min(3, len(panels))
    fig, axes = grid(len(panels), ncols, (4.6, 3.6))
    for j, ((title, results), ax) in enumerate(zip(panels, axes, strict=True)):
        ax.axhline(1.0, color="0.6", linestyle="--")
        for key, arm in results.items():
            if key == "true":
                continue
            d = arm["data"]
            color = f"C{list(arms).index(key) - 1}"  # one color per set in every panel
            freqs, ratio = d["rapsd_freqs"][1:], d["rapsd_ratio"][1:]
            ax.plot(freqs, ratio, marker="o", ms=2, color=color, label=arms[key])
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("frequency (cycles per pixel)")
        if j % ncols == 0:
            ax.set_ylabel("RAPSD / true data's")
    fig.suptitle("Calibration sets against the true data at N (channel-mean RAPSD ratio)")
    legend_below(fig, axes, 3, 8, 0.1)
    return [save(fig, run.out / "self_calibration_rapsd.png")]


# --------------------------------------------------------------------------- apply.py


def apply(run, series, m: int) -> list[Path]:
    """Per cell: the best single method, both pairs and Apply, as FD ratio to plain."""
    cells = run.data.get("cells", [])
    if not cells:
        return []
    fig, ax = pyplot().subplots(figsize=(max(8, 0.32 * len(cells)), 4.5))
    x = list(range(len(cells)))
    for name, fn, marker in series:
        ax.scatter(x, [fn(c) for c in cells], marker=marker, label=name, s=30)
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels(
        [f"{c['spectrum'][:4]} {c['case']} {c['sampler'][0]}{c['steps']}" for c in cells],
        rotation=90,
        fontsize=6,
    )
    ax.set_ylabel("FD / FD plain")
    ax.set_title(f"Apply on the testbed (M={m}): FD ratio to plain per cell")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return [save(fig, run.out / "apply_fd_ratio.png")]


# --------------------------------------------------------------------------- dead_leaves.py


def sample_grids(path: Path, grids: dict, to_image, title: str) -> list[Path]:
    """Eight samples a row, one row per model."""
    order = [k for k in ("plain", "noiseshift", "native", "true") if k in grids]
    fig, axes = pyplot().subplots(len(order), 8, figsize=(8, len(order) + 0.4))
    for r, key in enumerate(order):
        imgs = to_image(grids[key].float())[:, :3].clamp(0, 1)
        for i in range(8):
            ax = axes[r, i]
            ax.imshow(imgs[i].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(key, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return [save(fig, path)]
