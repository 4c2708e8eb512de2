"""The GoogLeNet paper's Table 3 for this evaluation: models x crops, errors and cost, as text, Markdown and a plot.

Rows: for each number of models k (the first k of the list) and each crop mode, the top-1 and top-5 error and
the cost in forward passes per image (k x crops). For GoogLeNet the paper's top-5 errors (ILSVRC 2012
validation, Table 3) stand beside ours where the paper has the same (models, crops).
"""
from __future__ import annotations

from pathlib import Path

from common.files import write_atomic

# "Going Deeper with Convolutions", Table 3: top-5 error by (models, crops per image).
PAPER_TABLE3 = {(1, 1): 10.07, (1, 10): 9.15, (1, 144): 7.89, (7, 1): 8.09, (7, 10): 7.62, (7, 144): 6.67}


def table_rows(hits, images: int, sizes: list[int], modes: tuple[int, ...], googlenet: bool) -> list[dict]:
    rows = []
    for i, k in enumerate(sizes):
        for j, crops in enumerate(modes):
            top1, top5 = (100 * hits[i, j, c].item() / max(images, 1) for c in (0, 1))
            row = {"models": k, "crops": crops, "cost": k * crops, "top1_error": 100 - top1,
                   "top5_error": 100 - top5}
            if googlenet and (k, crops) in PAPER_TABLE3:
                row["paper_top5_error"] = PAPER_TABLE3[(k, crops)]
            rows.append(row)
    return rows


def _cells(row: dict) -> list[str]:
    paper = f"{row['paper_top5_error']:.2f}%" if "paper_top5_error" in row else ""
    return [str(row["models"]), str(row["crops"]), str(row["cost"]), f"{row['top1_error']:.2f}%",
            f"{row['top5_error']:.2f}%", paper]


HEADER = ["models", "crops", "cost", "top-1 error", "top-5 error", "paper top-5"]


def text_table(rows: list[dict]) -> str:
    show_paper = any("paper_top5_error" in r for r in rows)
    header = HEADER if show_paper else HEADER[:-1]
    cells = [c if show_paper else c[:-1] for c in map(_cells, rows)]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def markdown_table(rows: list[dict], title: str) -> str:
    show_paper = any("paper_top5_error" in r for r in rows)
    header = HEADER if show_paper else HEADER[:-1]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in rows:
        cells = _cells(row) if show_paper else _cells(row)[:-1]
        lines.append("| " + " | ".join(cells) + " |")
    if show_paper:
        lines += ["", "Paper: Szegedy et al., \"Going Deeper with Convolutions\", Table 3 (ILSVRC 2012 validation)."]
    return "\n".join(lines) + "\n"


def plot_table(rows: list[dict], path: Path, title: str) -> Path:
    """Top-5 error against crops per image, one line per number of models (the paper's dashed, for GoogLeNet)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    for k in sorted({r["models"] for r in rows}):
        mine = sorted((r["crops"], r["top5_error"]) for r in rows if r["models"] == k)
        axes.plot(*zip(*mine), marker="o", label=f"{k} model{'s' if k > 1 else ''}")
    for k, style in ((1, "--"), (7, ":")):
        paper = sorted((crops, error) for (models, crops), error in PAPER_TABLE3.items() if models == k)
        if any("paper_top5_error" in r for r in rows):
            axes.plot(*zip(*paper), linestyle=style, marker="x", color="grey",
                      label=f"paper, {k} model{'s' if k > 1 else ''}")
    axes.set_xscale("log")
    axes.set_xticks([1, 10, 144], labels=["1", "10", "144"])
    axes.set_xlabel("crops per image")
    axes.set_ylabel("top-5 error (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()

    def write(f):
        figure.savefig(f, format="png")
    try:
        return write_atomic(path, write)
    finally:
        plt.close(figure)
