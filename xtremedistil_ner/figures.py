"""The report's figures, drawn from the report's own data: training curves (each student's
train loss and dev macro F1 epoch by epoch over its sub-stages, so where a schedule pays and
where it stalls is visible at a glance) and, for runs over many languages, test F1 per language."""

from __future__ import annotations

from pathlib import Path
import math
from typing import Any, Callable

PNG = "curves.png"
LANGUAGES_PNG = "languages.png"
LEGEND_MAX = 8  # scopes (languages) a student's curves name in a legend


def curve_points(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per trained epoch, in order, from a `progress.json` history."""
    return [{"stage": rec["stage"], "trainable": "+".join(rec["trainable"]), **epoch}
            for rec in history for epoch in rec["epochs"]]


def plot_curves(curves: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> None:
    """`curves`: student -> scope -> points. One row per student: train loss (log scale) and
    dev macro F1 against the epoch count, stage boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(curves), 2, figsize=(12, 3.2 * len(curves)), squeeze=False, sharex="row")
    for (student, scopes), (loss_ax, f1_ax) in zip(curves.items(), axes):
        named = 1 < len(scopes) <= LEGEND_MAX  # past that, one thin line per language and no legend (it covered the figure)
        style = {"marker": "."} if len(scopes) <= LEGEND_MAX else {"color": "tab:blue", "alpha": 0.35, "lw": 0.8}
        starts: dict[int, str] = {}
        for scope, points in scopes.items():
            x = list(range(1, len(points) + 1))
            label = scope if named else None
            loss_ax.plot(x, [p["train_loss"] for p in points], label=label, **style)
            dev = [(i, p["dev_macro_f1"]) for i, p in zip(x, points) if p.get("dev_macro_f1") is not None]
            if dev:
                f1_ax.plot(*zip(*dev), label=label, **style)
            starts |= {i: points[i]["stage"] for i in range(len(points)) if i == 0 or points[i]["stage"] != points[i - 1]["stage"]}
        for i, stage in starts.items():  # each stage start once, however many languages share it
            for ax in (loss_ax, f1_ax):
                ax.axvline(i + 0.5, color="grey", lw=0.8, ls="--")
                ax.text(i + 0.55, 0.98, stage, transform=ax.get_xaxis_transform(), fontsize=7, va="top", rotation=90, color="grey")
        each = f"\n({len(scopes)} languages, a line each)" if len(scopes) > LEGEND_MAX else ""
        loss_ax.set_yscale("log")
        loss_ax.set_title(f"{student}: train loss (each stage's own loss){each}", fontsize=9)
        f1_ax.set_title(f"{student}: dev macro F1 (epochs that were scored){each}", fontsize=9)
        for ax in (loss_ax, f1_ax):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch (over all sub-stages)")
            ax.grid(alpha=0.3)
            if named:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def share(value: float, teacher: float | None) -> float:
    """`value` as a % of the teacher's; nan where the teacher scored 0 (a share of nothing)."""
    return 100 * value / teacher if teacher else math.nan


def percent(value: float) -> str:
    """A share as a table shows it: "–" for none (never nan% or inf%)."""
    return "–" if math.isnan(value) else f"{value:.1f}%"


def share_of_teacher(models: dict[str, Any], name: str, lang: str) -> float:
    """Model `name`'s test F1 on `lang` as a % of the teacher's; nan where the teacher scored 0."""
    return share(models[name]["test_f1"][lang], models["teacher"]["test_f1"].get(lang))


def by_share(models: dict[str, Any], name: str) -> Callable[[str], float]:
    """A sort key over languages: `name`'s share of the teacher's F1, lowest first (nan lowest)."""
    return lambda lang: -math.inf if math.isnan(v := share_of_teacher(models, name, lang)) else v


def first_student(models: dict[str, Any]) -> str:
    """The model the per-language views are ordered by: the first student (the teacher alone: itself)."""
    return next((n for n in models if n != "teacher"), "teacher")


def plot_languages(report: dict[str, Any], path: Path) -> None:
    """Test F1 per language, one row each, sorted by the first student's share of the teacher's
    F1: the teacher and every model side by side, the retention printed at the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, langs, scripts = report["models"], report["languages"], report.get("scripts", {})
    key = first_student(models)
    order = sorted(langs, key=by_share(models, key))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.24 * len(order)))
    y = list(range(len(order)))
    for name, m in models.items():
        ax.scatter([m["test_f1"][l] for l in order], y, s=18, label=name, marker="s" if name == "teacher" else "o")
    for yi, lang in zip(y, order):
        ax.text(1.01, yi, f"{share_of_teacher(models, key, lang):.0f}%", transform=ax.get_yaxis_transform(), va="center", fontsize=7)
    ax.set_yticks(y, [f"{l} ({scripts[l]})" if l in scripts else l for l in order], fontsize=7)
    ax.set_xlabel("test F1 (seqeval, strict IOB2)")
    columns = min(len(models), 3)  # six long student names on one row ran past the figure's edges
    ax.set_title(f"Test F1 per language, by {key}'s share of the teacher's (right)", fontsize=9,
                 pad=10 + 12 * math.ceil(len(models) / columns))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=columns, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
