"""Model cards: the ``README.md`` of a model repo, YAML front matter (Hub metadata) plus prose.

The front matter carries what the Hub indexes: license, ``library_name: zoo``, tags (``zoo`` and
the family), the training dataset and the test metrics as a ``model-index``. It is rendered and
parsed with ``huggingface_hub.ModelCard``; :func:`check_card` compares it with a manifest entry.
"""

from __future__ import annotations

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
        lot = info.level_of_theory
        parts.append(f"{lot['xc']}/{lot['basis']}" + (f", grid {lot['grid']}" if "grid" in lot else "")
                     + (f" ({lot['code']})" if "code" in lot else ""))
    if info.data_source:
        parts.append(info.data_source)
    return "; ".join(parts) or "not declared"


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
