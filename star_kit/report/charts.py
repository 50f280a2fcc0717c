"""The report's four charts, drawn once with matplotlib's Agg canvas (no display, no pyplot state) and saved as
PNG (``accuracy.png``) and as SVG (inline in ``report.html``): held-out accuracy with stderr bars, kept /
rationalized / not kept training samples, training steps, and seconds per phase, per iteration."""

from __future__ import annotations

import io
from typing import Any

from .data import maj_label, results, summary

COLORS = {"accuracy": "#1f6feb", "maj": "#cf222e", "kept": "#2da44e", "rationalized": "#8250df", "not kept": "#d0d7de",
          "steps": "#bf8700", "sample": "#1f6feb", "rationalize": "#8250df", "train": "#bf8700",
          "evaluate": "#2da44e"}


def figure(data: dict[str, Any]):
    """A matplotlib Figure of the run in ``data`` (:func:`star_kit.report.data.load_run`). Its text is shown as
    written: a '$' in a run's name, model or phase is not TeX math (matplotlib would parse '$\\frac$' and fail)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        return _figure(data)


def _figure(data: dict[str, Any]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = results(data)
    its = [r.iteration for r in metrics]
    fig = Figure(figsize=(12, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    (ax_acc, ax_cnt), (ax_steps, ax_sec) = fig.subplots(2, 2)
    fig.suptitle(f"star-kit run {data['run']}: {summary(data, unfinished=False)}", fontsize=10)

    pts = [(r.iteration, 100 * r.accuracy, 100 * (r.accuracy_stderr or 0.0))
           for r in metrics if isinstance(r.accuracy, (int, float))]
    if pts:
        xs, ys, es = zip(*pts)
        line, _, _ = ax_acc.errorbar(xs, ys, yerr=es, marker="o", capsize=4, color=COLORS["accuracy"],
                                     label="greedy")
        line.set_gid("accuracy")  # <g id="accuracy"> in the SVG: the line and one marker per iteration
        for x, y in zip(xs, ys):
            ax_acc.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    label = maj_label(data["metrics"])  # maj@K beside the greedy accuracy, when it was on
    maj = [(r.iteration, 100 * r.maj_accuracy, 100 * (r.maj_accuracy_stderr or 0.0))
           for r in metrics if isinstance(r.maj_accuracy, (int, float))] if label else []
    if maj:
        xs, ys, es = zip(*maj)
        maj_line, _, _ = ax_acc.errorbar(xs, ys, yerr=es, marker="s", capsize=4, linestyle="--",
                                         color=COLORS["maj"], label=label)
        maj_line.set_gid("maj")
        for x, y in zip(xs, ys):
            ax_acc.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8,
                            color=COLORS["maj"])
        ax_acc.legend(fontsize=8, loc="upper left")
        pts = pts + maj
    ax_acc.set_title("held-out accuracy (%) ± stderr; 0 = few-shot baseline", fontsize=10)
    ax_acc.set_ylim(0, max([100 * 0.1] + [min(100.0, y + e) * 1.15 for _, y, e in pts]))

    kept = [r.kept for r in metrics]
    rescued = [r.rationalized for r in metrics]
    rest = [max(0, r.sampled - r.kept - r.rationalized) for r in metrics]
    ax_cnt.bar(its, kept, color=COLORS["kept"], label="kept (correct)")
    ax_cnt.bar(its, rescued, bottom=kept, color=COLORS["rationalized"], label="rationalized")
    ax_cnt.bar(its, rest, bottom=[a + b for a, b in zip(kept, rescued)], color=COLORS["not kept"], label="not kept")
    ax_cnt.set_title("training samples (--samples per question): kept, rationalized, not kept", fontsize=10)
    ax_cnt.legend(fontsize=8, loc="upper left")

    bars = ax_steps.bar(its, [r.steps for r in metrics], color=COLORS["steps"])
    ax_steps.bar_label(bars, fontsize=8)
    ax_steps.set_title("training steps", fontsize=10)

    bottom = [0.0] * len(metrics)
    for phase in data["phases"]:
        vals = [float((r.seconds or {}).get(phase) or 0.0) for r in metrics]
        ax_sec.bar(its, vals, bottom=bottom, label=phase, color=COLORS.get(phase))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax_sec.set_title("seconds per phase", fontsize=10)
    if data["phases"]:
        ax_sec.legend(fontsize=8, loc="upper left")

    for ax in (ax_cnt, ax_steps):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_acc, ax_cnt, ax_steps, ax_sec):
        ax.set_xlabel("iteration", fontsize=9)
        ax.set_xticks(its or [0])
        ax.set_xlim(min(its or [0]) - 0.5, max(its or [0]) + 0.5)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(labelsize=8)
    return fig


def image(fig, fmt: str) -> bytes:
    """``fig`` as ``png`` or ``svg`` bytes (the SVG without a date and with fixed ids: the same run, the same
    page)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "star-kit"}):
        fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()
