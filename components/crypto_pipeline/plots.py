"""The figures of the tune and train steps, drawn on ``matplotlib.figure.Figure`` objects.

Figures, not pyplot: drawing them neither needs nor changes matplotlib's backend
(Jupyter's inline one stays). The tune step draws the search (``plot_search``: the
optimization history and, when there are any, the hyperparameters' importances); the
train step draws the loss curves, the test days' predictions and the residuals
(``plot_training``). Both steps import this module; neither imports the other.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crypto_pipeline.hyperparameters import OBJECTIVE_METRIC

if TYPE_CHECKING:
    from crypto_pipeline.model import FitResult

HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"


def plot_search(
    trials: list[dict[str, Any]],
    out: Path,
    least_squares: float | None = None,
    importances: dict[str, float] | None = None,
) -> list[str]:
    """Draws the search as Katib's UI shows an Experiment; returns the files' names.

    The history shows what ``trials.json`` holds: each finished trial's ``eval_loss``,
    the best so far, and the least-squares line's eval loss (``least_squares``) on which
    the trials that kept the line sit; pruned and failed trials, which have no
    ``eval_loss``, are marked in a strip of their own. The importance plot is drawn only
    when there are ``importances`` (``param_importances``). Drawn on
    ``matplotlib.figure.Figure`` objects: matplotlib's backend is left alone.
    """
    names = [plot_history(trials, out / HISTORY_PLOT, least_squares)]
    if importances:
        complete = sum(t["state"] == "COMPLETE" for t in trials)
        names.append(plot_importances(importances, complete, out / IMPORTANCE_PLOT))
    return names


def plot_history(
    trials: list[dict[str, Any]], path: Path, least_squares: float | None = None
) -> str:
    """Saves ``history_figure`` as a PNG; returns the file's name."""
    return save_figure(history_figure(trials, least_squares), path)


def history_figure(trials: list[dict[str, Any]], least_squares: float | None = None):
    """The optimization history: finished trials' eval loss, best so far, pruned apart.

    The upper axes hold the finished trials (dots at their ``eval_loss``), the best so
    far (a step line), the best trial (a star) and the least-squares line's eval loss
    (dashed); the lower strip marks the trials that did not finish (pruned: a cross).
    """
    import matplotlib.ticker
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5))
    main, strip = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    done = [t for t in trials if t["state"] == "COMPLETE"]
    numbers = [t["number"] for t in done]
    values = [t[OBJECTIVE_METRIC] for t in done]
    if least_squares is not None:
        main.axhline(
            least_squares,
            color="tab:green",
            linestyle="--",
            label="least squares' eval loss: what a trial keeps\n"
            "unless its network clearly beats the line",
        )
    main.plot(numbers, values, "o", color="tab:blue", label="finished trial: eval loss kept")
    best_so_far = [min(values[: i + 1]) for i in range(len(values))]
    last = max(t["number"] for t in trials)  # the best so far holds to the last trial
    main.step(
        [*numbers, last],
        [*best_so_far, best_so_far[-1]],
        where="post",
        color="tab:red",
        label="best so far",
    )
    best = done[values.index(min(values))]
    kept = {None: "", 0: " (kept least squares)"}.get(
        best.get("best_epoch"), f" (kept epoch {best.get('best_epoch')})"
    )
    main.plot(
        best["number"],
        best[OBJECTIVE_METRIC],
        "*",
        markersize=15,
        color="black",
        label=f"best: trial {best['number']}, {best[OBJECTIVE_METRIC]:.4g}{kept}",
        zorder=5,
    )
    main.set_ylabel(f"{OBJECTIVE_METRIC} (MSE of standardized return)")
    main.set_title(
        "Optimization history: each finished trial's eval loss, and the best so far",
        fontsize=10,
    )
    main.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for state, marker, color, label in (
        ("PRUNED", "x", "grey", "pruned: stopped early, no eval loss"),
        ("FAIL", "X", "tab:red", "failed"),
    ):
        stopped = [t["number"] for t in trials if t["state"] == state]
        if stopped:
            strip.plot(stopped, [0] * len(stopped), marker, color=color, label=label)
    if len(done) < len(trials):
        strip.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    strip.set_yticks([])
    strip.set_ylabel("not\nfinished", fontsize=8)
    strip.set_xlabel("trial")
    strip.set_xlim(-0.5, last + 0.5)
    strip.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return fig


def plot_importances(importances: dict[str, float], complete: int, path: Path) -> str:
    """The hyperparameters' importances for eval_loss, largest on top."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    names = sorted(importances, key=importances.__getitem__)
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance for {OBJECTIVE_METRIC} (sums to 1)")
    ax.set_title(
        f"Hyperparameter importance for {OBJECTIVE_METRIC}, the tuned objective "
        f"(PED-ANOVA, {complete} finished trials)",
        fontsize=10,
    )
    return save_figure(fig, path)


def kept_text(result: FitResult) -> str:
    """What training kept, and why, in a sentence (the loss plot's title says it)."""
    from crypto_pipeline.model import SIGNIFICANCE_Z

    line = f"least squares' {result.start_eval_loss:.4g}"
    if result.best_epoch:
        return (
            f"Kept epoch {result.best_epoch}: eval loss {result.best_eval_loss:.4g} against "
            f"{line}, better by {result.gain_z:.1f} standard errors day by day (more than "
            f"{SIGNIFICANCE_Z:g} needed)."
        )
    best = f"the network's best, epoch {result.network_epoch} ({result.network_eval_loss:.4g})"
    gain = (
        f"better by only {result.gain_z:.1f} standard errors day by day"
        if result.gain_z > 0
        else "no better day by day"
    )
    return (
        f"Kept least squares (eval loss {result.start_eval_loss:.4g}): {best} is {gain} "
        f"(more than {SIGNIFICANCE_Z:g} needed)."
    )


def plot_loss(result: FitResult, path: Path) -> str:
    """Saves ``loss_figure`` as a PNG; returns the file's name."""
    return save_figure(loss_figure(result), path)


def loss_figure(result: FitResult):
    """The loss curves, the least-squares line's eval loss, and what was kept.

    The curves are the network's, epoch by epoch; the dashed line is the least-squares
    start's eval loss (epoch 0). A star marks the weights kept: the start, at epoch 0 on
    the dashed line, or the kept epoch on the eval curve, so that the plot says what
    ``best_epoch`` says. When the line was kept, a ring marks the network's best epoch,
    which did not beat it clearly.
    """
    import matplotlib.ticker
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    epochs = range(1, len(result.history["loss"]) + 1)
    ax.plot(epochs, result.history["loss"], label="train, network")
    ax.plot(epochs, result.history["val_loss"], label="eval, network")
    ax.axhline(
        result.start_eval_loss,
        color="tab:green",
        linestyle="--",
        label="eval, least squares (epoch 0, the start)",
    )
    if result.best_epoch:
        kept = (result.best_epoch, result.best_eval_loss, f"kept: epoch {result.best_epoch}")
    else:
        kept = (0, result.start_eval_loss, "kept: least squares")
        ax.plot(
            result.network_epoch,
            result.network_eval_loss,
            "o",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor="tab:red",
            label=f"network's best (epoch {result.network_epoch}): not clearly better",
        )
    ax.plot(*kept[:2], "*", markersize=16, color="black", label=kept[2], zorder=5)
    ax.set(
        xlabel="epoch",
        ylabel="loss (MSE of standardized return)",
        yscale="log",
        xlim=(-1, len(epochs) + 1),
    )
    ax.set_title("\n".join(textwrap.wrap(kept_text(result), 95)), fontsize=9)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return fig


def plot_training(
    result: FitResult, test: pd.DataFrame, predicted: np.ndarray, out: Path
) -> list[str]:
    """Draws the train step's plots into ``out``; returns the files' names.

    ``loss.png`` (``loss_figure``), ``test_predictions.png`` (the predicted and actual
    close over the test days) and ``residuals.png`` (their differences, over time and as
    a histogram).
    """
    from matplotlib.figure import Figure

    dates = pd.to_datetime(test["date"])
    names = [plot_loss(result, out / "loss.png")]

    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot()
    ax.plot(dates, test["close"], label="actual close", color="black", linewidth=1)
    ax.plot(dates, predicted, label="predicted close", color="tab:orange", linewidth=1)
    coin_names = test["name"].dropna()  # "Bitcoin (synthetic)" on the sample
    coin = str(coin_names.iloc[0]) if len(coin_names) else ""
    ax.set(
        xlabel="date",
        ylabel="price",
        title=f"{coin} test period: predicted and actual close".strip(),
    )
    ax.legend()
    fig.autofmt_xdate()
    names.append(save_figure(fig, out / "test_predictions.png"))

    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    residuals = predicted - test["close"].to_numpy()
    left.plot(dates, residuals, linewidth=0.8)
    left.axhline(0, color="black", linewidth=0.5)
    left.set(xlabel="date", ylabel="predicted - actual", title="Residuals over the test period")
    right.hist(residuals, bins=40)
    right.set(xlabel="predicted - actual", ylabel="days", title="Residual distribution")
    fig.autofmt_xdate()
    names.append(save_figure(fig, out / "residuals.png"))
    return names


def save_figure(fig, path: Path) -> str:
    """Saves a matplotlib figure as a PNG and returns the file's name.

    The figures are ``matplotlib.figure.Figure`` objects, not pyplot's: drawing them
    neither needs nor changes matplotlib's backend (Jupyter's inline one stays).
    """
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name
