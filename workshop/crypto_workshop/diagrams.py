"""The notebooks' pictures, drawn by code so that they follow what they show.

Three are concept diagrams (virtual machines beside containers, a Kubernetes cluster,
Kubeflow's parts); two are read from the project itself: the pipeline's graph from the
compiled ``crypto_pipeline.yaml`` (so it cannot drift from what a cluster runs), and a
run's steps with their durations and cache hits from its ``summary.json``.

Each function writes a PNG and returns its path, for ``IPython.display.Image``. They
draw on ``matplotlib.figure.Figure`` objects, not pyplot's: writing a file needs no
backend, and matplotlib's own (Jupyter's inline one in a notebook) is left alone, so a
notebook's own ``plt.show()`` still shows its pictures.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from crypto_pipeline.compiled import compiled_tasks

# One palette for every picture: what the project runs, what it stands on, what it skips.
OURS = "#cfe3f7"
BASE = "#e8e8e8"
ACCENT = "#f6d7a7"
QUIET = "#f7f7f7"
EDGE = "#4a4a4a"


def _canvas(width: float, height: float):
    fig = Figure(figsize=(width, height), dpi=110)
    ax = fig.add_subplot()
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def _box(ax, x, y, w, h, text, color=OURS, size=9, weight="normal", dashed=False):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=color,
            edgecolor=EDGE,
            linewidth=1,
            linestyle="--" if dashed else "-",
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight)


def _arrow(ax, start, end, text="", bend=0.0):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=12,
            color=EDGE,
            lw=1,
            connectionstyle=f"arc3,rad={bend}",
        )
    )
    if text:
        ax.text(
            (start[0] + end[0]) / 2,
            (start[1] + end[1]) / 2 + 0.08,
            text,
            ha="center",
            fontsize=7,
            color=EDGE,
        )


def _save(fig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", facecolor="white")
    return path


def vm_and_containers(path: str | os.PathLike[str]) -> Path:
    """Virtual machines (a guest kernel each) beside containers (one shared kernel)."""
    fig, ax = _canvas(10, 4.6)
    for left, title, middle, guest in (
        (0.2, "virtual machines", "hypervisor", True),
        (5.2, "containers", "container engine (Docker, containerd)", False),
    ):
        ax.text(left + 2.3, 4.35, title, ha="center", fontsize=12, weight="bold")
        _box(ax, left, 0.1, 4.6, 0.45, "hardware", BASE)
        _box(ax, left, 0.6, 4.6, 0.45, "host operating system (its kernel)", BASE)
        _box(ax, left, 1.1, 4.6, 0.45, middle, ACCENT)
        for n in range(3):
            x = left + n * 1.55
            top = 1.6
            if guest:
                _box(ax, x, top, 1.5, 0.7, "guest OS\n(own kernel)", ACCENT, size=8)
                top += 0.75
            _box(ax, x, top, 1.5, 0.55, "libraries", QUIET, size=8)
            _box(ax, x, top + 0.6, 1.5, 0.55, f"app {'ABC'[n]}", OURS, size=9)
    ax.text(
        5,
        -0.25,
        "A VM boots a whole guest OS (minutes, gigabytes); a container is a process with its "
        "own files on the host's kernel (a second, megabytes).",
        ha="center",
        fontsize=8,
        style="italic",
    )
    return _save(fig, path)


def kubernetes_cluster(path: str | os.PathLike[str]) -> Path:
    """A Kubernetes cluster: the control plane and two nodes, and kubectl talking to it."""
    fig, ax = _canvas(10, 5.9)
    _box(ax, 0.1, 3.0, 9.8, 2.0, "", QUIET, dashed=True)
    ax.text(0.25, 4.75, "control plane", fontsize=11, weight="bold")
    _box(ax, 3.4, 3.95, 3.2, 0.6, "API server\n(kube-apiserver)", OURS, weight="bold")
    _box(ax, 0.4, 3.2, 2.4, 0.6, "etcd\n(the cluster's state)", BASE)
    _box(ax, 3.6, 3.15, 2.8, 0.55, "scheduler", BASE)
    _box(ax, 7.0, 3.2, 2.6, 0.6, "controller manager\n(control loops)", BASE)
    _arrow(ax, (3.4, 4.1), (2.8, 3.6))
    _arrow(ax, (5.0, 3.95), (5.0, 3.7))
    _arrow(ax, (6.6, 4.1), (7.0, 3.6))
    _box(ax, 1.2, 5.3, 1.4, 0.5, "kubectl", ACCENT, weight="bold")
    _arrow(ax, (2.6, 5.55), (3.9, 4.55), "HTTPS: objects as JSON")
    for n, left in enumerate((0.1, 5.1)):
        _box(ax, left, 0.1, 4.8, 2.5, "", QUIET, dashed=True)
        ax.text(left + 0.15, 2.35, f"node {n + 1}", fontsize=11, weight="bold")
        _box(ax, left + 0.2, 1.55, 2.1, 0.55, "kubelet", BASE)
        _box(ax, left + 2.5, 1.55, 2.1, 0.55, "kube-proxy", BASE)
        _box(ax, left + 0.2, 0.25, 4.4, 0.45, "container runtime (containerd)", BASE, size=8)
        for p in range(3):
            _box(ax, left + 0.2 + p * 1.5, 0.8, 1.35, 0.6, f"Pod\n{'nginx' if p < 2 else '…'}")
        _arrow(ax, (5.0, 3.0), (left + 1.25, 2.1), "Pods to run" if n == 0 else "")
    return _save(fig, path)


KUBEFLOW_PARTS = (
    ("Pipelines", "workflows of containers", True),
    ("Katib", "tunes a model's settings", True),
    ("KServe", "model serving", True),
    ("Notebooks", "Jupyter in the cluster", False),
    ("Trainer", "distributed training", False),
    ("Model Registry", "model versions", False),
    ("Spark Operator", "Spark jobs on Kubernetes", False),
)
"""Kubeflow 26.03's parts: name, job, and whether this tutorial's pipeline uses it."""


def kubeflow_parts(path: str | os.PathLike[str]) -> Path:
    """Kubeflow's parts on Kubernetes; the ones the crypto pipeline uses stand out."""
    fig, ax = _canvas(10, 3.8)
    _box(ax, 0.1, 0.1, 9.8, 0.55, "Kubernetes (kind on a laptop, or GKE, EKS, AKS, …)", BASE)
    _box(
        ax,
        0.1,
        0.75,
        9.8,
        0.5,
        "Istio, Dex and oauth2-proxy (sign-in), Knative, cert-manager (a full install)",
        QUIET,
        size=8,
    )
    _box(ax, 0.1, 3.05, 9.8, 0.5, "Central Dashboard and Profiles (one UI; a namespace each)")
    width = 9.8 / len(KUBEFLOW_PARTS)
    for n, (name, job, used) in enumerate(KUBEFLOW_PARTS):
        _box(
            ax,
            0.1 + n * width + 0.05,
            1.4,
            width - 0.1,
            1.5,
            f"{name}\n\n{textwrap.fill(job, 14, break_long_words=False)}",
            OURS if used else QUIET,
            size=8,
            weight="bold" if used else "normal",
            dashed=not used,
        )
    ax.text(
        5,
        -0.2,
        "solid: what the crypto pipeline uses (notebooks 05 and 06); dashed: the rest",
        ha="center",
        fontsize=8,
        style="italic",
    )
    return _save(fig, path)


def _layers(after: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each task's depth in the graph: one more than the deepest task it waits for."""
    depth: dict[str, int] = {}

    def visit(task: str) -> int:
        if task not in depth:
            depth[task] = 1 + max((visit(t) for t in after[task]), default=-1)
        return depth[task]

    for task in after:
        visit(task)
    return depth


def pipeline_graph(package: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """The graph of a compiled pipeline (its IR YAML): each task, its image, what it waits for.

    Drawn from the file a cluster runs, so it shows what KFP's UI will show. A group
    (a ``dsl.If`` branch) is one box, as the UI shows it before you open it.
    """
    tasks = [t for t in compiled_tasks(package) if not t["inside"]]  # a group is one box
    names = {t["task"] for t in tasks}
    after = {t["task"]: [a for a in t["after"].split(", ") if a in names] for t in tasks}
    images = {t["task"]: t["image"].rsplit("/", 1)[-1] for t in tasks}
    depth = _layers(after)
    rows: dict[int, list[str]] = {}
    for task in after:
        rows.setdefault(depth[task], []).append(task)
    width = 2.6 * len(rows)
    height = 1.3 * max(len(r) for r in rows.values()) + 1.4
    fig, ax = _canvas(width, height)
    where = {}
    for level, names in rows.items():
        for n, task in enumerate(names):
            y = height / 2 + (n - (len(names) - 1) / 2) * 1.3 - 0.35
            where[task] = (0.2 + level * 2.6, y)
            _box(ax, *where[task], 2.0, 0.7, f"{task}\n{images[task] or '(a group)'}", size=8)
    for task, before in after.items():
        x, y = where[task]
        for other in before:
            ox, oy = where[other]
            if depth[task] - depth[other] == 1:
                _arrow(ax, (ox + 2.0, oy + 0.35), (x, y + 0.35))
            else:  # over the tasks between: an arc above them
                _arrow(ax, (ox + 1.0, oy + 0.7), (x + 1.0, y + 0.7), bend=-0.35)
    ax.set_title(f"{Path(package).name}: {len(tasks)} top-level tasks", fontsize=10)
    return _save(fig, path)


def run_timeline(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """A run's steps, one bar each, as long as the step took; cache hits say so."""
    steps = [s for s in summary["durations_s"] if s != "total"]
    fig = Figure(figsize=(8, 0.45 * len(steps) + 1), dpi=110)
    ax = fig.add_subplot()
    start = 0.0
    for row, step in enumerate(steps):
        seconds = summary["durations_s"][step]
        cached = step in summary["cache_hits"]
        ax.barh(row, max(seconds, 0.05), left=start, color=BASE if cached else OURS, ec=EDGE)
        label = "from cache" if cached else f"{seconds:.1f} s"
        ax.text(start + max(seconds, 0.05) + 0.3, row, label, va="center", fontsize=8)
        start += seconds
    ax.set_yticks(range(len(steps)), steps)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    total = summary["durations_s"].get("total", start)
    ax.set_title(f"{Path(summary['run_dir']).name}: {total:.1f} s in all", fontsize=10)
    ax.set_xlim(0, max(start, 1) * 1.2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _save(fig, path)
