"""``zoo select``: choose which structures of a pool to label."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from zoo.selection._doptimal import greedy_d_optimal, log_det_information
from zoo.selection._features import DESCRIPTORS, descriptor_features, model_features
from zoo.selection._fps import farthest_point, random_selection
from zoo.selection._maxvol import extrapolation_grade, maxvol

METHODS = ("d-optimal", "maxvol", "fps", "random")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo select",
        description="Choose k structures of an unlabelled pool to label (D-optimal design over features).",
    )
    parser.add_argument("pool", type=Path, help="candidate structures (any file ase.io.read reads, e.g. .extxyz)")
    parser.add_argument("-k", type=int, required=True, help="number of structures to select")
    parser.add_argument("--method", choices=METHODS, default="d-optimal")
    parser.add_argument("--model", help="features from this model (registry name or checkpoint folder)")
    parser.add_argument("--descriptor", choices=DESCRIPTORS, default="coulomb",
                        help="features without a model (ignored with --model)")
    parser.add_argument("--pooling", choices=("mean", "sum"), default="mean", help="per-structure pooling of --model features")
    parser.add_argument("--ridge", type=float, default=1e-6,
                        help="d-optimal ridge, relative to the mean squared feature")
    parser.add_argument("--tol", type=float, default=1.05, help="maxvol: minimal volume growth of an exchange")
    parser.add_argument("--seed", type=int, default=0, help="for fps and random")
    parser.add_argument("-o", "--output", type=Path, required=True, help="selected structures (extxyz)")
    parser.add_argument("--indices-out", type=Path, help="selected indices into the pool, one a line")
    parser.add_argument("--grade-out", type=Path,
                        help="extrapolation grade of every pool structure w.r.t. the selection, one a line")
    return parser


def select(features: np.ndarray, k: int, method: str, ridge: float = 1e-6, tol: float = 1.05,
           seed: int = 0) -> np.ndarray:
    """Indices of ``k`` rows of ``features`` by ``method`` (one of :data:`METHODS`); ``ridge``
    is relative to the mean squared feature, so that it means the same for any units."""
    if method == "d-optimal":
        # all-zero features have no scale: fall back to the absolute ridge
        return greedy_d_optimal(features, k, ridge=ridge * float(np.mean(features**2)) or ridge)
    if method == "maxvol":
        return maxvol(features, k, tol=tol)
    if method == "fps":
        return farthest_point(features, k, seed=seed)
    if method == "random":
        return random_selection(len(features), k, seed=seed)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def select_main(argv: list[str]) -> int:
    """Entry point of ``zoo select``; returns the exit status."""
    import ase.io

    from zoo.data.readers.ase_io import write_extxyz

    args = _parser().parse_args(argv)
    if not args.pool.is_file():
        print(f"zoo select: no pool file {args.pool}", file=sys.stderr)
        return 2
    pool = ase.io.read(args.pool, index=":")
    try:
        if args.model:
            from zoo.registry import load

            features = model_features(load(args.model), pool, pooling=args.pooling)
            source = f"model {args.model}"
        else:
            features = descriptor_features(pool, args.descriptor)
            source = f"{args.descriptor} descriptor"
        indices = select(features, args.k, args.method, args.ridge, args.tol, args.seed)
    except ValueError as error:
        print(f"zoo select: {error}", file=sys.stderr)
        return 2
    write_extxyz(args.output, [pool[i] for i in indices])
    if args.indices_out:
        _write_lines(args.indices_out, [str(i) for i in indices])
    print(f"zoo select: {len(indices)} of {len(pool)} structures by {args.method} on {features.shape[1]} "
          f"features ({source}); log det(XᵀX) = {log_det_information(features, indices):.4g}; "
          f"wrote {args.output}")
    if args.grade_out:
        try:
            grades = extrapolation_grade(features[indices], features)
        except ValueError as error:  # e.g. fewer selected structures than features
            print(f"zoo select: no extrapolation grades: {error}", file=sys.stderr)
            return 1
        _write_lines(args.grade_out, [f"{g:.6g}" for g in grades])
        print(f"zoo select: extrapolation grades (max {grades.max():.3g}, "
              f"{int((grades > 1).sum())} > 1) in {args.grade_out}")
    return 0


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
