"""Model cards: the ``README.md`` of a model repo, YAML front matter (Hub metadata) plus prose.

The front matter carries what the Hub indexes: license, ``library_name: zoo``, tags (``zoo`` and
the family), the training dataset and the test metrics as a ``model-index``. It is rendered and
parsed with ``huggingface_hub.ModelCard``; :func:`check_card` compares it with a manifest entry.

For the terminal, :func:`describe` writes the same content as plain text, every metric with its
unit (:func:`metric_unit`), and ``zoo list`` shows each model's :func:`headline` metric.
"""

from __future__ import annotations

import functools
import shutil
import textwrap
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from zoo.registry._manifest import ModelEntry, ModelInfo

#: Hub pipeline tag for models of graphs (molecules), used as the model-index task type.
PIPELINE_TAG = "graph-ml"


def card_data(info: ModelInfo) -> ModelCardData:
    """The front matter of ``info``'s card."""
    dataset = info.training_data["dataset"] if info.training_data else None
    results = [
        EvalResult(
            task_type=PIPELINE_TAG,
            task_name=info.family,
            dataset_type=dataset or "unknown",
            dataset_name=dataset or "unknown",
            dataset_split=info.metrics["split"],
            metric_type=metric,
            metric_value=value,
        )
        for metric, value in info.metrics["values"].items()
    ] if info.metrics else None
    return ModelCardData(
        license=info.license,
        library_name="zoo",
        pipeline_tag=PIPELINE_TAG,
        tags=["zoo", info.family, *info.tags],
        datasets=[dataset] if dataset else None,
        model_name=info.name,
        eval_results=results,
    )


def _level_of_theory(info: ModelInfo) -> str:
    parts = []
    if info.level_of_theory:
        parts.append(info.level_of_theory.describe())
    if info.data_source:
        parts.append(info.data_source)
    return "; ".join(parts) or "not declared"


#: Units of metrics that a family computes in a fixed unit whatever its card's ``units`` say:
#: zoo.metrics reports Hamiltonian and orbital errors in µEh (the orbital cosine is a fraction).
FAMILY_METRIC_UNITS = {
    "hamiltonian": dict.fromkeys(("hamiltonian_mae_all", "hamiltonian_mae_diagonal", "hamiltonian_mae_off_diagonal",
                                  "orbital_energy_mae", "homo_error", "lumo_error", "gap_error"), "µEh"),
}

#: Statistics in the unit of the quantity they measure: ``U0_mae`` is in the unit of ``U0``.
SAME_UNIT_STATISTICS = ("_mae", "_rmse")

#: The metric ``zoo list`` shows for each family, the first of these a card has; otherwise its
#: first ``*_mae``.
HEADLINE_METRICS = {
    "force-field": ("forces_mae", "energy_mae"),
    "hamiltonian": ("hamiltonian_mae_all", "hamiltonian_mae"),
    "consistency": ("rmsd",),
}


def metric_unit(info: ModelInfo, metric: str) -> str | None:
    """The unit of one of ``info``'s metrics, or None where it is not known (losses are weighted sums).

    In order: the card's ``units`` for the metric itself, the unit its family computes it in
    (:data:`FAMILY_METRIC_UNITS`), the card's unit of the quantity a MAE or RMSE measures
    (``U0_mae``: ``U0``; ``energy_per_atom_mae``: ``energy`` per atom). Never a guess.
    """
    if metric in info.units:
        return info.units[metric]
    if metric in FAMILY_METRIC_UNITS.get(info.family, {}):
        return FAMILY_METRIC_UNITS[info.family][metric]
    for suffix in SAME_UNIT_STATISTICS:
        quantity = metric.removesuffix(suffix)
        if quantity == metric:
            continue
        if quantity in info.units:
            return info.units[quantity]
        per_atom = quantity.removesuffix("_per_atom")
        if per_atom != quantity and per_atom in info.units:
            return f"{info.units[per_atom]}/atom"
    return None


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def metric_text(info: ModelInfo, metric: str) -> str:
    """``"0.1395 eV"``: the value of one of ``info``'s metrics with its unit, if known."""
    unit = metric_unit(info, metric)
    return _number(info.metrics["values"][metric]) + (f" {unit}" if unit else "")


def headline(info: ModelInfo) -> str:
    """``"U0_mae 0.1395 eV"``: the metric that sums a model up (:data:`HEADLINE_METRICS`), or ``""``."""
    values = info.metrics["values"] if info.metrics else {}
    preferred = [m for m in HEADLINE_METRICS.get(info.family, ()) if m in values]
    metric = next(iter(preferred + [m for m in values if m.endswith("_mae")]), None)
    return f"{metric} {metric_text(info, metric)}" if metric else ""


def short_level_of_theory(info: ModelInfo) -> str:
    """``"b3lyp5/def2-svp"`` (``"rhf/sto-3g"``), or where the labels come from when zoo does not know their level."""
    if info.level_of_theory:
        level = info.level_of_theory
        return f"{level.xc or level.method}/{level.basis}"
    return info.data_source or ""


def file_size(size: int) -> str:
    """``"4.2 MB"``, ``"453 kB"``: a size in bytes for people (decimal units, one decimal below 10)."""
    if size < 1000:
        return f"{size} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 999.5 or unit == "GB":
            return f"{size:.1f} {unit}" if size < 9.95 else f"{size:.0f} {unit}"


def describe(info: ModelInfo, config: dict[str, Any] | None = None, ref: str | None = None,
             hub: str | None = None, width: int | None = None) -> str:
    """A model's card as plain text for the terminal: what it is, its metrics with units, how to load it.

    Args:
        info: the model's metadata (a manifest entry, or read from its ``config.json``).
        config: its ``config.json``, for the parent of a fine-tuned model and the writer's version.
        ref: what to pass to ``zoo.load`` (default: the name).
        hub: where it is published, ``org/repo@revision``.
        width: of the text (default: the terminal's, at most 100 columns).
    """
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 100)
    # paths, repo ids and model names stay whole
    fill = functools.partial(textwrap.fill, width=width, break_long_words=False, break_on_hyphens=False)
    ref = ref or info.name
    rows = [("architecture", info.architecture),
            ("elements", ", ".join(info.elements)),
            ("units", ", ".join(f"{k} {v}" for k, v in info.units.items())),
            ("level of theory", _level_of_theory(info))]
    if info.training_data:
        td = info.training_data
        rows.append(("training data", td["dataset"] + (f", {td['size']} structures" if "size" in td else "")
                     + (f": {td['description']}" if "description" in td else "")))
    rows += [("recipe", info.recipe), ("license", info.license)]
    if config:
        rows += [("fine-tuned from", config.get("finetuned_from")),
                 ("checkpoint", f"format {config.get('format_version')}, written by zoo {config.get('zoo_version')}")]
    rows.append(("Hub", hub))
    key_width = max(len(key) for key, _ in rows) + 2
    lines = [f"{info.name}: a {info.family} model", ""]
    if info.description:
        lines += [fill(info.description, initial_indent="  ", subsequent_indent="  "), ""]
    lines += [fill(str(value), initial_indent=f"  {key:<{key_width}}", subsequent_indent=" " * (key_width + 2))
              for key, value in rows if value]
    if info.metrics:
        values = info.metrics["values"]
        name_width = max(map(len, values)) + 2
        lines += ["", fill(f"test metrics, on {info.metrics['split']}", subsequent_indent="    ")]
        lines += [f"  {metric:<{name_width}}{metric_text(info, metric)}" for metric in values]
    lines += ["", "how to load", f'  Python:     model = zoo.load("{ref}")']
    if info.recipe:
        lines.append(f"  fine-tune:  zoo fit --config {info.recipe} --model.pretrained {ref}")
    lines.append(f"  the card:   zoo info {ref} --raw")
    return "\n".join(lines)


def render_card(info: ModelInfo, config: dict[str, Any]) -> str:
    """The full ``README.md`` text for a checkpoint described by ``info`` and its ``config.json``."""
    rows = [
        ("family", info.family),
        ("architecture", info.architecture or config["task"]["class_path"]),
        ("elements", ", ".join(info.elements)),
        ("units", ", ".join(f"{k}: {v}" for k, v in info.units.items())),
        ("level of theory", _level_of_theory(info)),
    ]
    if info.training_data:
        td = info.training_data
        rows.append(("training data", td["dataset"] + (f" ({td['size']} structures)" if "size" in td else "")
                     + (f": {td['description']}" if "description" in td else "")))
    if info.recipe:
        rows.append(("recipe", f"`{info.recipe}`"))
    if config.get("finetuned_from"):
        rows.append(("fine-tuned from", f"`{config['finetuned_from']}`"))
    rows.append(("checkpoint", f"format {config['format_version']}, written by zoo {config['zoo_version']}"))
    lines = [f"# {info.name}", ""]
    if info.description:
        lines += [info.description, ""]
    lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if info.metrics:
        lines += [f"## Metrics ({info.metrics['split']})", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:g} |" for k, v in info.metrics["values"].items()] + [""]
    lines += [
        "## Usage", "", "```python", "import zoo", "", f'model = zoo.load("{info.name}")  # LightningModule, eval mode',
        "```", "",
        "Fine-tune from it (new heads and per-element references start fresh):", "",
        "```bash", f"zoo fit --config {info.recipe or '<recipe.yaml>'} --model.pretrained {info.name}", "```", "",
    ]
    card = ModelCard(f"---\n{card_data(info).to_yaml()}\n---\n\n" + "\n".join(lines))
    return str(card)


def check_card(text: str, entry: ModelEntry) -> list[str]:
    """Differences between a card's front matter and a manifest entry (empty if they agree)."""
    try:
        data = ModelCard(text, ignore_metadata_errors=False).data
    except Exception as error:  # huggingface_hub raises ValueError or yaml errors for bad front matter
        return [f"unreadable front matter: {error}"]
    problems = []
    if data.license != entry.license:
        problems.append(f"license {data.license!r} != manifest {entry.license!r}")
    missing_tags = {"zoo", entry.family} - set(data.tags or [])
    if missing_tags:
        problems.append(f"tags lack {sorted(missing_tags)}")
    if entry.training_data["dataset"] not in (data.datasets or []):
        problems.append(f"datasets {data.datasets} lack {entry.training_data['dataset']!r}")
    card_metrics = {r.metric_type: r.metric_value for r in data.eval_results or []}
    if card_metrics != entry.metrics["values"]:
        problems.append(f"metrics {card_metrics} != manifest {entry.metrics['values']}")
    splits = {r.dataset_split for r in data.eval_results or []}
    if splits and splits != {entry.metrics["split"]}:
        problems.append(f"metric split {sorted(splits)} != manifest {entry.metrics['split']!r}")
    return problems
