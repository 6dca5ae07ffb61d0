"""Training, validation and test errors of published force fields side by side (issue 20: why DeNS
does not lower the test error at convergence).

DeNS is an auxiliary task: it can lower the test error where a model fits its training frames much
better than unseen ones (it regularises), or where its features are short of what the denoising task
teaches. This measures the first: energy and force MAE of each model on the frames it was trained on,
on its validation frames and on the independent test trajectory. A model is a registry name (its
recipe's split is drawn again: ``random``, 950/50, ``--seed``) or a run folder of ``zoo fit``
(``runs/.../version_N``: its best checkpoint and the ``split.npz`` it trained on, e.g. a run of
``study.py``). Writes ``results/dens_converged/fit_gap_<molecule>.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/dens/fit_gap.py --molecule ethanol \\
        --models ethanol-pbe-def2svp-v2 ethanol-dens-pbe-def2svp-v2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "results" / "dens_converged"
sys.path.insert(0, str(HERE))
from study import errors  # noqa: E402  (the DeNS study's own error measure)


def measure(molecule: str, names: list[str], seed: int, n_train: int, n_val: int) -> list[dict]:
    import ase.io
    import numpy as np

    import zoo
    from zoo.data.splits import random_split
    from zoo.registry import load_run

    data = ROOT / "data" / molecule
    frames = ase.io.read(data / f"{molecule}_pbe_def2svp_train.extxyz", index=":")
    test = ase.io.read(data / f"{molecule}_pbe_def2svp_test.extxyz", index=":")
    drawn = random_split(len(frames), sizes=[n_train, n_val, 0], seed=seed)
    records = []
    for name in names:
        run = Path(name)
        if (run / "config.yaml").is_file():  # a run folder: its best weights, the split it trained on
            model, split = load_run(run, "best"), np.load(run / "split.npz")
            train, val, where = split["train"], split["val"], f"{run}/split.npz"
        else:
            model, train, val, where = zoo.load(name), drawn.train, drawn.val, f"random, seed {seed}"
        sets = {"train": [frames[i] for i in train], "val": [frames[i] for i in val], "test": test}
        record = {"model": name, "molecule": molecule, "split": where}
        for part, images in sets.items():
            record.update({f"{part}_{key}": value for key, value in errors(model, images).items()})
            record[f"n_{part}"] = len(images)
        records.append(record)
        print(json.dumps(record), flush=True)
    return records


def table(records: list[dict]) -> str:
    lines = [f"# Training, validation and test errors: {records[0]['molecule']}", "",
             "`python benchmarks/dens/fit_gap.py` (see its docstring) makes every row: MAE on the "
             f"frames each model trained on ({records[0]['n_train']}), on its validation frames "
             f"({records[0]['n_val']}) and on the independent test trajectory ({records[0]['n_test']}).", "",
             "| model | split | train force MAE (meV/Å) | validation | test | test / train | train energy MAE (meV) | test |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['model']} | {r['split']} | {r['train_forces_mae_meV_A']:.2f} | {r['val_forces_mae_meV_A']:.2f} | "
                     f"{r['test_forces_mae_meV_A']:.2f} | {r['test_forces_mae_meV_A'] / r['train_forces_mae_meV_A']:.2f} | "
                     f"{r['train_energy_mae_meV']:.2f} | {r['test_energy_mae_meV']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", required=True, choices=["ethanol", "malonaldehyde"])
    parser.add_argument("--models", nargs="+", required=True, help="registry names or zoo fit run folders")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed (the recipe's seed_everything)")
    parser.add_argument("--n-train", type=int, default=950)
    parser.add_argument("--n-val", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="records file (default results/dens_converged/"
                        "fit_gap_<molecule>.json); the table goes beside it as .md")
    args = parser.parse_args(argv)
    out = args.out or OUT / f"fit_gap_{args.molecule}.json"
    records = measure(args.molecule, args.models, args.seed, args.n_train, args.n_val)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1) + "\n")
    out.with_suffix(".md").write_text(table(records))


if __name__ == "__main__":
    main()
