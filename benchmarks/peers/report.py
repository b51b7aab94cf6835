"""Markdown tables, the machine description, and a PNG chart per table (matplotlib is
installed only in the peers' virtualenv; without it the charts are skipped)."""

from __future__ import annotations

import os
import platform
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path

import psycopg

from benchmarks.databases import POSTGRES_URL

RESULTS = Path(__file__).resolve().parent.parent / "results"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (first column left-aligned, the others right-aligned)."""
    align = [":--"] + ["--:"] * (len(headers) - 1)
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def machine() -> str:
    """CPU count, memory, Python and PostgreSQL versions, as a Markdown list."""
    from benchmarks.peers.lifecycle import libpq

    try:
        memory = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout
    except OSError:
        memory = "unknown"
    try:
        with psycopg.connect(libpq(POSTGRES_URL)) as conn:
            row = conn.execute("SELECT version()").fetchone()
            postgres = str(row[0]) if row else "unknown"
    except psycopg.Error:
        postgres = "not reachable"
    return "\n".join(
        [
            f"- CPUs (`nproc`): {os.cpu_count()}",
            f"- Python: {platform.python_version()} ({platform.platform()})",
            f"- PostgreSQL: {postgres}",
            "- Memory (`free -h`):",
            "",
            "```",
            memory.rstrip(),
            "```",
        ]
    )


def chart(path: Path, title: str, labels: Sequence[str], values: Sequence[float], unit: str,
          *, decimals: int = 1, reference: float | None = None) -> bool:  # fmt: skip
    """A horizontal bar chart of ``values`` (long labels wrapped, each bar's value written
    with ``decimals``), with a dashed line at ``reference`` if given (1 for a ratio); False
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    wrapped = [textwrap.fill(label, 48) for label in labels]
    lines = sum(label.count("\n") + 1 for label in wrapped)
    figure, axes = plt.subplots(figsize=(10, 0.35 * lines + 0.3 * len(labels) + 1.5))
    axes.barh(wrapped, list(values), color="#4c72b0")
    axes.invert_yaxis()
    if reference is not None:
        axes.axvline(reference, color="#555555", linestyle="--", linewidth=1)
    axes.set_xlabel(unit)
    axes.set_title(title)
    for y, value in enumerate(values):
        axes.text(value, y, f" {value:,.{decimals}f}", va="center")
    axes.margins(x=0.12)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def grouped_chart(path: Path, title: str, groups: Sequence[str],
                  series: dict[str, Sequence[float]], unit: str) -> bool:  # fmt: skip
    """Bars per group (e.g. per query) with one bar per series (e.g. per size), log scale."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(10, 5))
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        axes.bar([g + index * width for g in range(len(groups))], list(values), width,
                 label=name)  # fmt: skip
    axes.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], list(groups),
                    rotation=20, ha="right")  # fmt: skip
    axes.set_yscale("log")
    axes.set_ylabel(unit)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
