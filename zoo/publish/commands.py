"""``zoo hub serve|add|push``: the local Hub and publishing, beside the registry's commands.

Like those (:mod:`zoo.registry.commands`), ``hub_main(argv)`` returns an exit status and prints a
registry error as one message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo._signals import stops_interrupt
from zoo.registry.commands import command, manifest_arguments, manifest_of


def _serve(args) -> int:
    from zoo.publish._server import LocalHub
    from zoo.registry._errors import RegistryError

    hub = LocalHub(manifest_of(args), args.models_dir, args.workdir, args.host, args.port)
    # SIGTERM (kill, systemd, a scheduler) and SIGHUP (the terminal closed) stop olah like Ctrl-C does,
    # instead of ending this process and leaving olah holding the port
    try:
        with stops_interrupt(), hub:
            for name, revision in hub.revisions.items():
                print(f"serving {name} at {revision}")
            print(f"local Hub at {hub.endpoint}; on the clients:\n  export HF_ENDPOINT={hub.endpoint}\n"
                  f"(olah log: {hub.log_file}; Ctrl-C stops)", flush=True)
            code = hub.process.wait()
            if code:  # olah stopped by itself: say why instead of exiting as if asked to
                raise RegistryError(f"olah exited with code {code}; see {hub.log_file}")
    except KeyboardInterrupt as stop:
        print(f"zoo hub serve: stopped ({str(stop) or 'Ctrl-C'})", file=sys.stderr)
    return 0


def _add(args) -> int:
    from zoo.publish._push import add_model

    entry = add_model(args.folder, args.repo_id, args.manifest, args.hub_dir, args.zoo_versions, args.supersedes)
    print(f"added {entry.name}: {entry.repo_id}@{entry.revision}"
          + (f"; {args.supersedes} is now superseded by it" if args.supersedes else ""))
    return 0


def _push(args) -> int:
    from zoo.publish._push import push

    result = push(args.name, args.repo_id, manifest_of(args), args.folder, args.dry_run, args.out, args.token,
                  args.private)
    if args.dry_run:
        where = f" built at {result}" if args.out else ""
        print(f"dry run: the folder of {args.name}{where} matches the manifest; nothing uploaded")
    else:
        print(f"uploaded {args.name}: {result.commit_url}")
    return 0


@command
def hub_main(argv: list[str]) -> int:
    """zoo hub serve|add|push: the local Hub and publishing."""
    parser = argparse.ArgumentParser(prog="zoo hub", description="Serve, add and publish models.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the published models over the Hub API (olah)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--models-dir", type=Path, help="model folders, <models-dir>/<name>/ (default: --hub-dir)")
    serve.add_argument("--workdir", type=Path, help="git repos, olah config and log (default: ~/.cache/zoo/hub)")
    manifest_arguments(serve)
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
    manifest_arguments(push)
    push.set_defaults(run=_push)

    args = parser.parse_args(argv)
    return args.run(args)
