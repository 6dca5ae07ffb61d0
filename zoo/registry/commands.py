"""``zoo list``, ``zoo info``, ``zoo download`` and ``zoo verify``.

Each ``*_main(argv)`` parses its own arguments and returns an exit status; registry errors are
printed as one message (they say what to do), not as a traceback. :func:`command` and the
manifest options serve ``zoo hub`` (:mod:`zoo.publish.commands`) too.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path


def command(main):
    """Print a :class:`RegistryError` as ``zoo: <message>`` and return 1."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        from zoo.registry._errors import RegistryError

        logging.basicConfig(format="%(message)s")
        # what the registry (and, for `zoo hub`, zoo.publish) does is the commands' progress report
        logging.getLogger("zoo").setLevel(logging.INFO)
        try:
            return main(sys.argv[1:] if argv is None else list(argv)) or 0
        except RegistryError as error:
            print(f"zoo: {error}", file=sys.stderr)
            return 1

    return run


def manifest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, help="a checkpoints.json (default: zoo's own)")
    parser.add_argument("--hub-dir", type=Path, help="folder of the package copies, <hub-dir>/<name>/ (default: zoo/_hub)")


def _hub_arguments(parser: argparse.ArgumentParser) -> None:
    manifest_arguments(parser)
    parser.add_argument("--cache-dir", type=Path, help="Hugging Face cache (default: HF_HUB_CACHE)")
    parser.add_argument("--token", help="Hub token for private or gated repos (default: HF_TOKEN or the stored login)")


def manifest_of(args):
    from zoo.registry._manifest import load_manifest

    return load_manifest(args.manifest, args.hub_dir)


@command
def list_main(argv: list[str]) -> int:
    """zoo list [PATTERN ...]: the published models, with their headline metric."""
    from zoo.registry._manifest import FAMILIES

    parser = argparse.ArgumentParser(
        prog="zoo list", description="List the published models: family, headline test metric, size of the "
                                     "weights, elements, level of theory. `zoo info NAME` says more.")
    parser.add_argument("pattern", nargs="*",
                        help="only names matching one of these shell wildcards, e.g. 'hamiltonian-*'")
    parser.add_argument("--family", choices=FAMILIES, help="only this family")
    manifest_arguments(parser)
    args = parser.parse_args(argv)
    from zoo.registry._cards import file_size, headline, short_level_of_theory
    from zoo.registry._load import select_models
    from zoo.registry._manifest import WEIGHTS_FILE

    manifest = manifest_of(args)
    models = select_models(manifest, args.family, args.pattern)
    if not models:
        if not manifest.models:
            print(f"no published models in {manifest.source}")
            return 0
        wanted = " ".join([*(repr(p) for p in args.pattern), *([f"--family {args.family}"] if args.family else [])])
        print(f"zoo list: no published model matches {wanted}; `zoo list` shows all {len(manifest.models)}",
              file=sys.stderr)
        return 1
    # the level of theory last: it may be a long sentence (where data made elsewhere comes from)
    rows = [("name", "family", "test metric", "size", "elements", "level of theory")]
    rows += [(m.name, m.family, headline(m), file_size(m.files[WEIGHTS_FILE].size), ",".join(m.elements),
              short_level_of_theory(m)) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for m in models:
        if m.superseded_by:
            print(f"\n{m.name} is superseded by {m.superseded_by} (still loadable, for reproducibility)")
    return 0


@command
def info_main(argv: list[str]) -> int:
    """zoo info NAME: a model's card, as text (or as published, with --raw)."""
    parser = argparse.ArgumentParser(
        prog="zoo info", description="Describe a model: its card (README.md) as text, every metric with its unit.")
    parser.add_argument("name", help="model name, hf://org/repo@revision, or folder")
    parser.add_argument("--raw", action="store_true",
                        help="print the card as published: YAML front matter and Markdown")
    _hub_arguments(parser)
    args = parser.parse_args(argv)
    from zoo.registry._load import model_card, resolve
    from zoo.registry._manifest import CARD_FILE, CONFIG_FILE

    manifest = manifest_of(args)
    if args.raw:
        print(model_card(args.name, args.cache_dir, args.token, manifest))
        return 0
    from zoo.registry._cards import describe

    resolved = resolve(args.name, manifest, args.cache_dir, args.token, files=(CONFIG_FILE, CARD_FILE))
    if resolved.entry is not None:
        # the manifest's record of a published model; its config.json (pinned by sha256) adds the
        # parent of a fine-tuned model and the writer's version, and is read without importing torch
        info, hub = resolved.entry, f"{resolved.entry.repo_id}@{resolved.entry.revision}"
        config = json.loads((resolved.folder / CONFIG_FILE).read_text(encoding="utf-8"))
    else:
        from zoo.registry._checkpoint import read_config

        config, info = read_config(resolved.folder)
        hub = None
    print(describe(info, config, args.name, hub))
    return 0


@command
def download_main(argv: list[str]) -> int:
    """zoo download NAME: fetch and verify a model into the Hub cache."""
    parser = argparse.ArgumentParser(prog="zoo download", description="Download and verify a model.")
    parser.add_argument("name", nargs="+", help="model names (or hf://org/repo@revision)")
    _hub_arguments(parser)
    args = parser.parse_args(argv)
    from zoo.registry._load import resolve

    manifest = manifest_of(args)
    for name in args.name:
        resolved = resolve(name, manifest, args.cache_dir, args.token)
        print(f"{resolved.name}: {resolved.folder} (from {resolved.source})")
    return 0


@command
def verify_main(argv: list[str]) -> int:
    """zoo verify [NAME ...]: recompute each published model's card metrics; 1 if any differs."""
    parser = argparse.ArgumentParser(
        prog="zoo verify",
        description="Reload published models through the registry and recompute the test metrics of their "
                    "cards on their recipes' test splits (the recipes ship with zoo; their data are files "
                    "under data/ of a source checkout: run from there, or give --root).")
    parser.add_argument("name", nargs="*", help="model names (default: every published model)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest relative difference from the card (default: 1e-3)")
    parser.add_argument("--root", type=Path, default=None,
                        help="the folder the recipes' data paths are relative to (default: the working folder)")
    _hub_arguments(parser)
    args = parser.parse_args(argv)
    from zoo.registry._verify import RELATIVE_TOLERANCE, MissingDataError, verify_model

    manifest = manifest_of(args)
    results, without_data = [], []
    for name in args.name or manifest.names():
        try:
            result = verify_model(name, args.tolerance or RELATIVE_TOLERANCE, args.root, cache_dir=args.cache_dir,
                                  token=args.token, manifest=manifest)
        except MissingDataError as error:
            if args.name:  # asked for by name: its data must be there
                raise
            print(f"{name}: not verified here: {error}", flush=True)
            without_data.append(name)
            continue
        print(result.table(), flush=True)
        results.append(result)
    failed = [r.name for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} of {len(results)} models meet their cards"
          + (f"; failing: {', '.join(failed)}" if failed else "")
          + (f"; {len(without_data)} not verified for want of their data: {', '.join(without_data)}"
             if without_data else ""))
    return 1 if failed else 0
