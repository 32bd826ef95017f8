"""Plots people would rather look at than read, as RGB arrays (for IMAGE outputs)."""

from __future__ import annotations

import numpy as np


def _figure_to_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return rgb


# a plot drawn for a given width (the sidebar tab): panels one under the other below
# this many pixels per panel, and 8 pt text (11 px at 100 dpi) whatever the width, so
# it reads at the size it is shown
MIN_PANEL_PX = 420
NARROW_FONT_PT = 8


def calibration_plot(record: dict, width: int | None = None) -> np.ndarray:
    """sigma_hat against sigma (with the identity) and the one-step error per step;
    with a Noise Level Correction table, a third panel: r against sigma. width: the
    image's width in pixels, for a place that shows it unscaled (panels stacked when
    narrow); None: the node's figure, 900 (three panels 1350) pixels wide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if width is None:
        return _calibration_figure(record, None)
    with plt.rc_context({"font.size": NARROW_FONT_PT, "legend.fontsize": NARROW_FONT_PT}):
        return _calibration_figure(record, width)


def _calibration_figure(record: dict, width: int | None) -> np.ndarray:
    import matplotlib.pyplot as plt

    sigmas, hats = record["sigmas"], record["sigma_hat"]
    res = record["resolution"]
    correction = record.get("correction")
    panels = 3 if correction else 2
    if width is None:
        fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.6), dpi=100)
    else:
        columns = max(1, min(panels, width // MIN_PANEL_PX))
        rows = -(-panels // columns)
        panel_height = min(0.8 * width / columns, 330)
        fig, grid = plt.subplots(
            rows, columns, figsize=(width / 100, rows * panel_height / 100), dpi=100, squeeze=False
        )
        axes = list(grid.flat)
        for unused in axes[panels:]:
            unused.set_visible(False)
    left, right = axes[0], axes[1]
    third = axes[2] if correction else None
    top = max(max(sigmas), max(hats))
    left.plot([0, top], [0, top], color="0.6", linestyle="--", label="identity")
    left.plot(sigmas, hats, marker="o", markersize=3, label="calibrated")
    narrow = width is not None and width < panels * MIN_PANEL_PX  # stacked panels
    left.set_xlabel("sigma (trajectory)")
    left.set_ylabel("sigma_hat" if narrow else "sigma_hat (told to the network)")
    left.set_title(
        f"{record['checkpoint']['model_class']} at {res['image_width']}x{res['image_height']}"
    )
    left.legend(loc="upper left")
    before = record["metrics"].get("error_before") or []
    after = record["metrics"].get("error_after") or []
    steps = np.arange(len(before))
    if before:
        right.semilogy(steps, before, marker="o", markersize=3, label="plain sigma")
    if after:
        right.semilogy(steps[: len(after)], after, marker="o", markersize=3, label="sigma_hat")
    right.set_xlabel("step (noisiest first)")
    right.set_ylabel("one-step error (MSE)")
    right.set_title(f"{record['cost']['network_evaluations']} network evaluations")
    right.legend(loc="best")
    if correction:
        _correction_panel(third, correction)
    fig.tight_layout()
    return _figure_to_rgb(fig)


def _correction_panel(ax, correction: dict) -> None:
    """r against the sampler's sigma: the table as Noise Level Correction applies it
    (piecewise linear in log sigma, end values held), calibrated levels marked."""
    import torch

    from ..noisecal.correction_table import CorrectionTable

    table = CorrectionTable.from_json(correction)
    lo, hi = min(table.sigmas), max(table.sigmas)
    grid = np.geomspace(lo / 2, hi, 200)  # a little below the table: the held end shows
    r = table(torch.from_numpy(grid)).numpy()
    ax.axhline(0.0, color="0.6", linestyle="--", label="no correction")
    ax.semilogx(grid, r, color="C2", label="applied r")
    ax.semilogx(table.sigmas, table.r, "o", color="C2", markersize=3, label="calibrated")
    ax.set_xlabel("sigma (sampler)")
    ax.set_ylabel("r   (sigma_hat = sigma (1 + r))")
    sampler = correction.get("sampler", "euler")
    evaluations = correction.get("network_evaluations")
    title = f"Noise Level Correction ({sampler}, {len(table.sigmas)} steps)"
    if evaluations is not None:
        title += f"\n{evaluations} network evaluations"
    ax.set_title(title, fontsize="medium")
    ax.legend(loc="best")


def save_png(image, path) -> None:
    """Write an RGB array (uint8 HxWx3, or float in [0, 1]) as PNG, making folders."""
    from pathlib import Path

    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def schedule_plot(curves: dict, title: str) -> np.ndarray:
    """Sigma per step for several schedules (name -> list of sigmas)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for name, sigmas in curves.items():
        ax.plot(range(len(sigmas)), list(sigmas), marker="o", markersize=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("sigma")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _figure_to_rgb(fig)
