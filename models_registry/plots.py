"""Server-side plots (PNG) for the validation report, monitoring and threshold tuning pages, drawn
from stored JSON figures. matplotlib's object API (Figure, no pyplot) keeps no global state, so
concurrent requests in one process cannot draw on each other's figures.

Text in plots can come from outside (attribute names): mathtext is off, so "$...$" is drawn as
typed, and long names are shortened. A PNG holds no markup, so nothing in it can run in a browser."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

COLOURS = {"candidate": "#1f5fbf", "champion": "#b54708", "reference": "#596577", "recent": "#1f5fbf"}
RC = {"text.parse_math": False, "text.usetex": False, "font.size": 9, "axes.titlesize": 10}


def safe_text(value: Any, limit: int = 40) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def _figure(width: float = 5.0, height: float = 4.0) -> Iterator[Figure]:
    with rc_context(RC):
        yield Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with rc_context(RC):
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _symlog(ax) -> None:
    """A y axis that shows 0.1 and 10,000 items a day on one plot. The default tick labels of a log
    axis are mathtext, which is off here, so they are written as plain numbers."""
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _empty(message: str) -> bytes:
    with _figure(5, 1.2) as fig:
        fig.text(0.5, 0.5, message, ha="center", va="center", color="#5b6470")
        return _png(fig)


# ---------------------------------------------------------------- validation report


def _models(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    curves = report.get("curves") or {}
    return [(name, curves[name]) for name in ("candidate", "champion") if name in curves]


def _legend_name(name: str, report: dict[str, Any], version: int | None) -> str:
    if name == "champion":
        return f"champion v{report.get('champion_version')}" if report.get("champion_version") else "champion"
    return f"this model (v{version})" if version else "this model"


def report_pr(report: dict[str, Any], version: int | None = None) -> bytes:
    models = _models(report)
    if not models:
        return _empty("No held-out labels of both classes: no curves.")
    with _figure() as fig:
        ax = fig.subplots()
        for name, c in models:
            ap = (report.get(name) or {}).get("pr_auc")
            label = _legend_name(name, report, version) + (f", PR AUC {ap:.3f}" if ap is not None else "")
            ax.step(c["pr"]["recall"], c["pr"]["precision"], where="post", color=COLOURS[name], label=label)
        prevalence = models[0][1]["positives"] / max(models[0][1]["n"], 1)
        ax.axhline(prevalence, color="#999", lw=0.8, ls=":", label=f"threat share {prevalence:.2f}")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall (held-out labels)")
        ax.legend(loc="lower left")
        return _png(fig)


def report_roc(report: dict[str, Any], version: int | None = None) -> bytes:
    models = _models(report)
    if not models:
        return _empty("No held-out labels of both classes: no curves.")
    with _figure() as fig:
        ax = fig.subplots()
        for name, c in models:
            auc = (report.get(name) or {}).get("roc_auc")
            label = _legend_name(name, report, version) + (f", ROC AUC {auc:.3f}" if auc is not None else "")
            ax.plot(c["roc"]["fpr"], c["roc"]["tpr"], color=COLOURS[name], label=label)
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls=":")
        ax.set(
            xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.02), title="ROC (held-out labels)"
        )
        ax.legend(loc="lower right")
        return _png(fig)


def report_calibration(report: dict[str, Any], version: int | None = None) -> bytes:
    models = _models(report)
    if not models:
        return _empty("No held-out labels of both classes: no calibration.")
    with _figure() as fig:
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls=":", label="perfectly calibrated")
        for name, c in models:
            rows = c["calibration"]
            ax.plot(
                [r["mean_score"] for r in rows],
                [r["threat_share"] for r in rows],
                marker="o",
                color=COLOURS[name],
                label=_legend_name(name, report, version),
            )
        ax.set(
            xlabel="mean score in bin",
            ylabel="share of threats in bin",
            xlim=(0, 1),
            ylim=(0, 1.02),
            title="Calibration (10 score bins)",
        )
        ax.legend(loc="upper left")
        return _png(fig)


def report_confusion(report: dict[str, Any], version: int | None = None) -> bytes:
    models = _models(report)
    if not models:
        return _empty("No held-out labels of both classes: no confusion matrices.")
    names = list(models[0][1]["confusion"])
    with _figure(2.3 * len(names) + 0.6, 2.3 * len(models) + 0.4) as fig:
        axes = fig.subplots(len(models), len(names), squeeze=False)
        for r, (model_name, c) in enumerate(models):
            for k, threshold_name in enumerate(names):
                ax = axes[r][k]
                m = c["confusion"].get(threshold_name)
                if m is None:
                    ax.axis("off")
                    continue
                grid = [[m["tn"], m["fp"]], [m["fn"], m["tp"]]]
                ax.imshow(grid, cmap="Blues")
                peak = max(max(row) for row in grid) or 1
                for i in range(2):
                    for j in range(2):
                        ax.text(
                            j, i, str(grid[i][j]), ha="center", va="center", color="white" if grid[i][j] > peak / 2 else "black"
                        )
                ax.set_xticks([0, 1], ["benign", "threat"])
                ax.set_yticks([0, 1], ["benign", "threat"])
                ax.set_xlabel("predicted")
                if k == 0:
                    ax.set_ylabel(f"{_legend_name(model_name, report, version)}\nactual")
                ax.set_title(f"{safe_text(threshold_name, 20)} at {m['threshold']:g}")
        return _png(fig)


def report_scores(report: dict[str, Any], version: int | None = None) -> bytes:
    models = _models(report)
    if not models:
        return _empty("No held-out labels of both classes: no score histograms.")
    with _figure(4.0 * len(models), 3.2) as fig:
        axes = fig.subplots(1, len(models), squeeze=False)[0]
        for ax, (name, c) in zip(axes, models, strict=True):
            edges = c["histogram"]["edges"]
            centres = [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]
            width = edges[1] - edges[0]
            ax.bar(centres, c["histogram"]["benign"], width=width, color="#067647", alpha=0.6, label="benign")
            ax.bar(centres, c["histogram"]["threat"], width=width, color="#b42318", alpha=0.6, label="threat")
            ax.axvline(report.get("threshold", 0.5), color="#10243e", ls="--", lw=1, label="review threshold")
            ax.set(xlabel="score", ylabel="held-out events", title=_legend_name(name, report, version), xlim=(0, 1))
            ax.legend(loc="upper center")
        return _png(fig)


REPORT_PLOTS = {
    "pr": report_pr,
    "roc": report_roc,
    "calibration": report_calibration,
    "confusion": report_confusion,
    "scores": report_scores,
}


# ---------------------------------------------------------------- monitoring


def monitoring_psi_history(snapshots: list[Any], score_limit: float, attribute_limit: float) -> bytes:
    points = [s for s in reversed(snapshots) if s.score_psi is not None]
    if not points:
        return _empty("No drift figures yet.")
    with _figure(6, 3) as fig:
        ax = fig.subplots()
        times = [s.created_at for s in points]
        ax.plot(times, [s.score_psi for s in points], marker="o", color="#1f5fbf", label="score PSI")
        ax.plot(times, [s.max_attribute_psi or 0 for s in points], marker="s", color="#b54708", label="largest attribute PSI")
        ax.axhline(score_limit, color="#1f5fbf", ls="--", lw=0.8, label=f"score limit {score_limit:g}")
        if attribute_limit != score_limit:
            ax.axhline(attribute_limit, color="#b54708", ls="--", lw=0.8, label=f"attribute limit {attribute_limit:g}")
        ax.set(ylabel="PSI", title="Drift against the training data")
        ax.legend(loc="upper left")
        fig.autofmt_xdate()
        return _png(fig)


def monitoring_overturns(by_day: list[dict[str, Any]], limit: float) -> bytes:
    days = [d for d in by_day if d.get("rate") is not None]
    if not days:
        return _empty("No verdicts on flagged items in the window.")
    with _figure(6, 3) as fig:
        ax = fig.subplots()
        labels = [d["day"][5:] for d in days]
        ax.bar(labels, [d["rate"] for d in days], color="#1f5fbf")
        for i, d in enumerate(days):
            ax.text(i, d["rate"], f"{d['overturned']}/{d['decided']}", ha="center", va="bottom", fontsize=7)
        ax.axhline(limit, color="#b42318", ls="--", lw=1, label=f"limit {limit:.0%}")
        ax.set(ylabel="overturned share", ylim=(0, 1.05), title="Overturn rate per day (flagged items)")
        ax.legend(loc="upper left")
        return _png(fig)


def monitoring_attributes(attribute_psi: dict[str, float], limit: float, top: int = 15) -> bytes:
    if not attribute_psi:
        return _empty("No attribute drift figures.")
    worst = sorted(attribute_psi.items(), key=lambda kv: kv[1], reverse=True)[:top]
    with _figure(6, 0.28 * len(worst) + 1.0) as fig:
        ax = fig.subplots()
        names = [safe_text(k, 30) for k, _ in reversed(worst)]
        values = [v for _, v in reversed(worst)]
        ax.barh(range(len(values)), values, color=["#b42318" if v > limit else "#596577" for v in values])
        ax.set_yticks(range(len(values)), names)
        ax.axvline(limit, color="#b42318", ls="--", lw=1)
        ax.set(xlabel="PSI", title=f"Attributes with the largest drift (limit {limit:g})")
        return _png(fig)


def monitoring_scores(score_bins: dict[str, Any]) -> bytes:
    if not score_bins:
        return _empty("No score distribution yet.")
    labels = [safe_text(x, 40) for x in score_bins["labels"]]
    with _figure(6, 3) as fig:
        ax = fig.subplots()
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], score_bins["reference"], width=0.4, color=COLOURS["reference"], label="training data")
        ax.bar([x + 0.2 for x in xs], score_bins["recent"], width=0.4, color=COLOURS["recent"], label="recent events")
        ax.set_xticks(list(xs), labels, rotation=45, ha="right")
        ax.set(ylabel="share of events", title="Score distribution (bins: deciles of the training data)")
        ax.legend(loc="upper right")
        return _png(fig)


# ---------------------------------------------------------------- tuning


def tuning_curves(curves: dict[str, Any]) -> bytes:
    """PR and ROC of the recent labelled events (curves as ml.curves returns them)."""
    with _figure(8, 3.4) as fig:
        ax_pr, ax_roc = fig.subplots(1, 2)
        ax_pr.step(curves["pr"]["recall"], curves["pr"]["precision"], where="post", color="#1f5fbf")
        ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall, recent labels")
        ax_roc.plot(curves["roc"]["fpr"], curves["roc"]["tpr"], color="#1f5fbf")
        ax_roc.plot([0, 1], [0, 1], color="#999", lw=0.8, ls=":")
        ax_roc.set(
            xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.02), title="ROC, recent labels"
        )
        return _png(fig)


def tuning_tradeoff(grid: Any, counts: dict[str, Any], per_day: float, current: float, recommended: float) -> bytes:
    with _figure(8, 3.4) as fig:
        ax = fig.subplots()
        ax.plot(grid, counts["flagged"] * per_day, color="#1f5fbf", label="queued for review / day")
        ax.plot(grid, counts["fp"] * per_day, color="#b54708", label="expected false positives / day")
        ax.plot(grid, counts["missed"] * per_day, color="#b42318", label="expected missed threats / day")
        ax.axvline(current, color="#596577", ls=":", label=f"current {current:g}")
        ax.axvline(recommended, color="#067647", ls="--", label=f"recommended {recommended:g}")
        _symlog(ax)
        ax.set(xlabel="review threshold", ylabel="per day", xlim=(0, 1), title="What a review threshold would have done")
        ax.legend(loc="best", fontsize=8)
        return _png(fig)


def tuning_costs(grid: Any, curves: dict[str, Any], per_day: float, chosen: dict[str, float]) -> bytes:
    named = [(k, v) for k, v in curves.items() if k != "grid"]
    if not named:
        return _empty("Costs were not given: no cost curves.")
    colours = ["#1f5fbf", "#b54708", "#b42318", "#067647"]
    with _figure(8, 3.4) as fig:
        ax = fig.subplots()
        for (name, cost), colour in zip(named, colours, strict=False):
            ax.plot(grid, cost * per_day, color=colour, label=f"{safe_text(name, 20)}")
            if name in chosen:
                ax.axvline(chosen[name], color=colour, ls="--", lw=0.8)
        _symlog(ax)
        ax.set(
            xlabel="threshold",
            ylabel="expected cost / day",
            xlim=(0, 1),
            title="Expected cost by threshold (dashed: recommended)",
        )
        ax.legend(loc="best", fontsize=8)
        return _png(fig)
