"""The test metrics beside the baselines, as one table for terminals, notebooks and KFP.

Kept free of TensorFlow so that printing a summary loads nothing heavy.
"""

from __future__ import annotations

from typing import Any

METRICS: tuple[str, ...] = ("rmse", "mae", "mape")
HEADER: tuple[str, ...] = ("RMSE", "MAE", "MAPE %")


def comparison_rows(metrics: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """The model's test metrics, then each baseline's, from a ``metrics.json``."""
    rows = [("model", {k: metrics[f"test_{k}"] for k in METRICS})]
    rows += [(f"baseline: {name}", values) for name, values in metrics["baselines"].items()]
    return rows


def comparison_lines(metrics: dict[str, Any], indent: str = "  ") -> list[str]:
    """The comparison as aligned text lines, a header line first."""
    lines = [f"{indent}{'':<26}" + "".join(f"{h:>10}" for h in HEADER)]
    for name, values in comparison_rows(metrics):
        lines.append(f"{indent}{name:<26}" + "".join(f"{values[k]:>10.2f}" for k in METRICS))
    return lines


def comparison_html(metrics: dict[str, Any]) -> str:
    """The comparison as an HTML table (the KFP report)."""
    head = "".join(f"<th>{h}</th>" for h in HEADER)
    body = "".join(
        f"<tr><td>{name}</td>" + "".join(f"<td>{values[k]:.2f}</td>" for k in METRICS) + "</tr>"
        for name, values in comparison_rows(metrics)
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"
