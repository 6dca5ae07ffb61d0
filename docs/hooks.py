"""MkDocs hooks: the table of published models, and the benchmarks' figures.

Pages write ``<!-- model-table -->`` and get the table of published models, generated from
``checkpoints.json`` at build time, so the docs can never list a model the registry does not have,
nor a metric its card does not state. The figures the benchmark scripts write
(``benchmarks/<name>/results/**.png``) are added to the site as ``figures/<name>/results/...``, so
pages show the figures of the committed results rather than copies of them.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "<!-- model-table -->"
ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "checkpoints.json"
BENCHMARKS = ROOT / "benchmarks"


def _metrics(entry: dict) -> str:
    """The card's error metrics (MAE-like, losses left out), with units where the card gives them."""
    units = entry.get("units", {})
    values = (entry.get("metrics") or {}).get("values", {})
    shown = []
    for key, value in values.items():
        if "loss" in key or not (key.endswith(("_mae", "_mae_all", "_rmse")) or key in units):
            continue
        unit = units.get(key) or units.get(key.rsplit("_", 1)[0])  # "U0_mae" in the unit of "U0"
        shown.append(f"{key} {value:.4g}{' ' + unit if unit else ''}")
    return "; ".join(shown) or "–"


def model_table() -> str:
    models = json.loads(MANIFEST.read_text(encoding="utf-8"))["models"]
    rows = ["| model | family | elements | test metrics (card) | test split | recipe |", "|---|---|---|---|---|---|"]
    for entry in sorted(models, key=lambda e: (e["family"], e["name"])):
        split = (entry.get("metrics") or {}).get("split", "–").replace("|", "/")
        rows.append(f"| `{entry['name']}` | {entry['family']} | {', '.join(entry['elements'])} | {_metrics(entry)} "
                    f"| {split} | `{entry.get('recipe') or '–'}` |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return markdown.replace(MARKER, model_table()) if MARKER in markdown else markdown


def on_files(files, config):
    from mkdocs.structure.files import File

    for figure in sorted(BENCHMARKS.glob("*/results/**/*.png")):
        if "runs" in figure.relative_to(BENCHMARKS).parts:  # training runs' own outputs, not results
            continue
        path = f"figures/{figure.relative_to(BENCHMARKS).as_posix()}"
        files.append(File.generated(config, path, abs_src_path=str(figure)))
    return files
