"""``zoo list``, ``zoo info``, ``zoo download``, ``zoo verify`` and ``zoo hub serve|add|push``.

Each ``*_main(argv)`` parses its own arguments and returns an exit status; registry errors are
printed as one message (they say what to do), not as a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
from pathlib import Path


def _commands(main):
    """Print a :class:`RegistryError` as ``zoo: <message>`` and return 1."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        from zoo.registry._errors import RegistryError

        logging.basicConfig(format="%(message)s")
        logging.getLogger("zoo.registry").setLevel(logging.INFO)
        try:
            return main(sys.argv[1:] if argv is None else list(argv)) or 0
        except RegistryError as error:
            print(f"zoo: {error}", file=sys.stderr)
            return 1

    return run


def _manifest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, help="a checkpoints.json (default: zoo's own)")
    parser.add_argument("--hub-dir", type=Path, help="folder of the package copies, <hub-dir>/<name>/ (default: zoo/_hub)")


def _hub_arguments(parser: argparse.ArgumentParser) -> None:
    _manifest_arguments(parser)
    parser.add_argument("--cache-dir", type=Path, help="Hugging Face cache (default: HF_HUB_CACHE)")
    parser.add_argument("--token", help="Hub token for private or gated repos (default: HF_TOKEN or the stored login)")


def _manifest(args):
    from zoo.registry._manifest import load_manifest

    return load_manifest(args.manifest, args.hub_dir)


@_commands
def list_main(argv: list[str]) -> int:
    """zoo list [PATTERN ...]: the published models, with their headline metric."""
    from zoo.registry._manifest import FAMILIES

    parser = argparse.ArgumentParser(
        prog="zoo list", description="List the published models: family, headline test metric, size of the "
                                     "weights, elements, level of theory. `zoo info NAME` says more.")
    parser.add_argument("pattern", nargs="*",
                        help="only names matching one of these shell wildcards, e.g. 'hamiltonian-*'")
    parser.add_argument("--family", choices=FAMILIES, help="only this family")
    _manifest_arguments(parser)
    args = parser.parse_args(argv)
    from zoo.registry._cards import file_size, headline, short_level_of_theory
    from zoo.registry._load import select_models
    from zoo.registry._manifest import WEIGHTS_FILE

    manifest = _manifest(args)
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


@_commands
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

    manifest = _manifest(args)
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


@_commands
def download_main(argv: list[str]) -> int:
    """zoo download NAME: fetch and verify a model into the Hub cache."""
    parser = argparse.ArgumentParser(prog="zoo download", description="Download and verify a model.")
    parser.add_argument("name", nargs="+", help="model names (or hf://org/repo@revision)")
    _hub_arguments(parser)
    args = parser.parse_args(argv)
    from zoo.registry._load import resolve

    manifest = _manifest(args)
    for name in args.name:
        resolved = resolve(name, manifest, args.cache_dir, args.token)
        print(f"{resolved.name}: {resolved.folder} (from {resolved.source})")
    return 0


@_commands
def verify_main(argv: list[str]) -> int:
    """zoo verify [NAME ...]: recompute each published model's card metrics; 1 if any differs."""
    parser = argparse.ArgumentParser(
        prog="zoo verify",
        description="Reload published models through the registry and recompute the test metrics of their "
                    "cards on their recipes' test splits (needs a source checkout: recipes/ and data/).")
    parser.add_argument("name", nargs="*", help="model names (default: every published model)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest relative difference from the card (default: 1e-3)")
    _hub_arguments(parser)
    args = parser.parse_args(argv)
    from zoo.registry._verify import RELATIVE_TOLERANCE, MissingDataError, verify_model

    manifest = _manifest(args)
    results, without_data = [], []
    for name in args.name or manifest.names():
        try:
            result = verify_model(name, args.tolerance or RELATIVE_TOLERANCE, cache_dir=args.cache_dir,
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


class _Stop(Exception):
    """A stop signal (SIGTERM, SIGHUP) turned into an exception, so that ``with`` blocks unwind."""


def _raise_stop(number, frame) -> None:
    signal.signal(number, signal.SIG_IGN)  # a second one must not interrupt the stopping
    raise _Stop(signal.Signals(number).name)


def _serve(args) -> int:
    from zoo.registry._errors import RegistryError
    from zoo.registry._server import LocalHub

    hub = LocalHub(_manifest(args), args.models_dir, args.workdir, args.host, args.port)
    # SIGTERM (kill, systemd, a scheduler) and SIGHUP (the terminal closed) stop olah like Ctrl-C does,
    # instead of ending this process and leaving olah holding the port
    stops = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {number: signal.signal(number, _raise_stop) for number in stops}
    try:
        with hub:
            for name, revision in hub.revisions.items():
                print(f"serving {name} at {revision}")
            print(f"local Hub at {hub.endpoint}; on the clients:\n  export HF_ENDPOINT={hub.endpoint}\n"
                  f"(olah log: {hub.log_file}; Ctrl-C stops)", flush=True)
            code = hub.process.wait()
            if code:  # olah stopped by itself: say why instead of exiting as if asked to
                raise RegistryError(f"olah exited with code {code}; see {hub.log_file}")
    except (KeyboardInterrupt, _Stop) as stop:
        print(f"zoo hub serve: stopped ({str(stop) or 'Ctrl-C'})", file=sys.stderr)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


def _add(args) -> int:
    from zoo.registry._push import add_model

    entry = add_model(args.folder, args.repo_id, args.manifest, args.hub_dir, args.zoo_versions, args.supersedes)
    print(f"added {entry.name}: {entry.repo_id}@{entry.revision}"
          + (f"; {args.supersedes} is now superseded by it" if args.supersedes else ""))
    return 0


def _push(args) -> int:
    from zoo.registry._push import push

    result = push(args.name, args.repo_id, _manifest(args), args.folder, args.dry_run, args.out, args.token,
                  args.private)
    if args.dry_run:
        where = f" built at {result}" if args.out else ""
        print(f"dry run: the folder of {args.name}{where} matches the manifest; nothing uploaded")
    else:
        print(f"uploaded {args.name}: {result.commit_url}")
    return 0


@_commands
def hub_main(argv: list[str]) -> int:
    """zoo hub serve|add|push: the local Hub and publishing."""
    parser = argparse.ArgumentParser(prog="zoo hub", description="Serve, add and publish models.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the published models over the Hub API (olah)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--models-dir", type=Path, help="model folders, <models-dir>/<name>/ (default: --hub-dir)")
    serve.add_argument("--workdir", type=Path, help="git repos, olah config and log (default: ~/.cache/zoo/hub)")
    _manifest_arguments(serve)
    serve.set_defaults(run=_serve)

    add = sub.add_parser("add", help="add a checkpoint folder to the manifest and the package")
    add.add_argument("folder", type=Path, help="written by zoo.registry.save_pretrained")
    add.add_argument("--repo-id", required=True, help="Hub repo it is published at, org/name")
    add.add_argument("--zoo-versions", help="zoo versions that load it (default: >= the version that wrote it)")
    add.add_argument("--manifest", type=Path, help="checkpoints.json to update (default: zoo's own and its package copy)")
    add.add_argument("--hub-dir", type=Path, help="where the package copy goes (default: zoo/_hub)")
    add.add_argument("--supersedes", metavar="NAME", help="a published model this one replaces: marked superseded "
                                                           "in the manifest, kept loadable")
    add.set_defaults(run=_add)

    push = sub.add_parser("push", help="check a model's exact folder and upload it (HfApi.upload_folder)")
    push.add_argument("name")
    push.add_argument("--repo-id", help="default: the manifest's repo_id")
    push.add_argument("--folder", type=Path, help="default: the package copy")
    push.add_argument("--dry-run", action="store_true", help="build and check the folder, upload nothing")
    push.add_argument("--out", type=Path, help="build the folder here (default: a temporary folder)")
    push.add_argument("--token")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    _manifest_arguments(push)
    push.set_defaults(run=_push)

    args = parser.parse_args(argv)
    return args.run(args)
