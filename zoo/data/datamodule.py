"""The LightningDataModule every recipe uses: read, check, split (and save the split), fit statistics, load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch_geometric.loader import DataLoader
from torch_geometric.transforms import Compose

from zoo.data import keys
from zoo.data._statistics import Statistics
from zoo.data.dataset import AtomicDataset, check_consistent_keys, resolve_dtype
from zoo.data.neighbors import RadiusGraph
from zoo.data.readers import read_structures
from zoo.data.splits import Split, group_labels, load_split, make_split
from zoo.data.transforms import SubtractReferenceEnergies, compute_statistics, fit_reference_energies

SPLIT_FILE = "split.npz"
_STANDARDIZE_MODES = {"per_atom": True, "per_structure": False, "auto": None}


class AtomicDataModule(pl.LightningDataModule):
    """Atomistic data for training, from any reader, with its split saved next to the run.

    Every argument is plain data so that LightningCLI builds the module from YAML::

        data:
          class_path: zoo.data.AtomicDataModule
          init_args:
            source: qm9
            reader_kwargs: {limit: 2400}
            cutoff: 5.0
            targets: [U0]
            standardize: [U0]
            split: {method: random, sizes: [2000, 200, 200], seed: 0}
            batch_size: 32

    :meth:`setup` reads the source, checks that the targets exist, splits it, saves the split to
    ``split_dir`` (default: the trainer's log directory) as ``split.npz``, and fits the training
    set's statistics. The data stay in physical units; :attr:`statistics` (a
    :class:`~zoo.data.Statistics`) tells a model how to scale its outputs and which reference
    energies were removed.

    Args:
        source: ``"qm9"`` or a file path (format from the extension, or ``reader_kwargs["format"]``),
            or a list of paths of one level of theory (e.g. a dataset labelled in parts), read with
            the same ``reader_kwargs`` and joined in order; Hamiltonian files must share their
            level of theory and conventions.
        reader_kwargs: passed to the reader (:func:`zoo.data.readers.read_structures`), e.g.
            ``{limit: 1000}`` for QM9, ``{info_keys: {REF_energy: energy}}`` for extxyz.
        cutoff: if given, a :class:`~zoo.data.RadiusGraph` (Å) is added to every structure on access.
        split: ``{method: random, sizes: [n_train, n_val, n_test] | fractions: [...], seed: 0}``,
            ``{method: group, key: qm9_id, sizes: [...] | fractions: [...], seed: 0}`` (whole
            groups of structures with the same ``key``, e.g. the structures of one molecule, go to
            one set; sizes count groups),
            ``{method: size, max_train_atoms: 20, min_test_atoms: 23, val_fraction: 0.1, seed: 0}``
            or ``{method: file, path: split.npz}`` (see :func:`zoo.data.splits.make_split`).
            Default: random 80/10/10 with seed 0.
        split_file: reload a saved split (overrides ``split``).
        split_dir: where to save ``split.npz`` (default: ``trainer.log_dir``; not saved if neither).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (default: ``batch_size``).
        num_workers: DataLoader worker processes.
        targets: keys every structure must carry; a missing one is an error naming those available.
        standardize: keys whose training-set mean/std go into :attr:`statistics`; a list (per atom
            for extensive energies, see :data:`zoo.data.transforms.EXTENSIVE`) or
            ``{key: per_atom | per_structure | auto}``.
        reference_energies: per-structure energies whose per-element reference energies are
            fitted by least squares on the training set and put in
            ``statistics[key]["reference_energies"]`` for the model to add back; the
            standardisation statistics of that key are those of the remainder. The data
            themselves keep their physical values, so metrics are in physical units.
        dtype: floating dtype of the data, ``"float32"`` or ``"float64"`` (default: torch's default).
        test_source: a separate source for the test set (e.g. an independent MD trajectory); the
            split then divides ``source`` into train and validation only.
        test_reader_kwargs: reader arguments for ``test_source`` (default: ``reader_kwargs``).
        test_level: with ``levels``, the level of theory of ``test_source``'s labels (default: the
            primary level): its structures are tagged with that level, so a multi-fidelity model
            is tested with that level's head, e.g. on the same frames' xTB labels::

                zoo test --config organic_multifidelity --ckpt_path <checkpoint> \\
                    --data.init_args.test_level gfn2-xtb \\
                    --data.init_args.test_reader_kwargs '{info_keys: {xtb_energy: energy},
                        array_keys: {xtb_forces: forces}, results: []}'
        unlabelled_source: structures without labels, trained on alongside the labelled training
            set (e.g. self-consistency training of a Hamiltonian on larger molecules): the training
            loader is then ``{"labelled": ..., "unlabelled": ...}``, cycled to the longer of the two
            (Lightning's ``max_size_cycle``). Never split, never used for statistics or targets.
        unlabelled_reader_kwargs: reader arguments for ``unlabelled_source`` (default: ``reader_kwargs``).
        levels: the levels of theory of multi-fidelity training, in the model's order (the first is
            the primary level, the one a test set and a published card speak of). ``source`` is
            then a list of ``{source, level, reader_kwargs}`` (reader arguments merged over
            ``reader_kwargs``): each structure is tagged with the position of its source's level
            (:data:`zoo.data.keys.FIDELITY`), and reference energies are fitted per level
            (``statistics[key]["level_reference_energies"]``), so that energies of different
            levels never share a zero. One file can serve two levels, read with other keys::

                levels: [pbe/def2-svp, gfn2-xtb]
                source:
                  - {source: md_pbe.extxyz, level: pbe/def2-svp}
                  - {source: md_xtb.extxyz, level: gfn2-xtb,
                     reader_kwargs: {info_keys: {xtb_energy: energy}, array_keys: {xtb_forces: forces},
                                     results: []}}
    """

    def __init__(
        self,
        source: str | list[str] | list[dict[str, Any]],
        reader_kwargs: dict[str, Any] | None = None,
        cutoff: float | None = None,
        split: dict[str, Any] | None = None,
        split_file: str | None = None,
        split_dir: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        targets: list[str] | None = None,
        standardize: list[str] | dict[str, str] | None = None,
        reference_energies: list[str] | None = None,
        dtype: str | None = None,
        test_source: str | None = None,
        test_reader_kwargs: dict[str, Any] | None = None,
        test_level: str | None = None,
        unlabelled_source: str | None = None,
        unlabelled_reader_kwargs: dict[str, Any] | None = None,
        levels: list[str] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(f"batch sizes must be >= 1, got {batch_size} and {eval_batch_size}")
        if cutoff is not None and not cutoff > 0:
            raise ValueError(f"cutoff must be positive (Å), got {cutoff}")
        self.levels = list(levels or [])
        self.source = self._check_sources(source, self.levels)
        self.reader_kwargs = dict(reader_kwargs or {})
        if "dtype" in self.reader_kwargs:
            raise ValueError("set dtype as the data module's argument, not in reader_kwargs")
        self.cutoff = cutoff
        self.split_spec = dict(split or {"method": "random", "fractions": [0.8, 0.1, 0.1], "seed": 0})
        self.split_file = split_file
        self.split_dir = split_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.targets = list(targets or [])
        self.standardize = self._standardize_modes(standardize)
        self.reference_energies = list(reference_energies or [])
        self.dtype = resolve_dtype(dtype)
        self.test_source = test_source
        self.test_reader_kwargs = dict(self.reader_kwargs if test_reader_kwargs is None else test_reader_kwargs)
        if test_level is not None and test_level not in self.levels:
            raise ValueError(f"test_level {test_level!r} is not one of levels {self.levels or '(none: one level)'}; "
                             "name the level of theory of test_source's labels among the levels")
        self.test_level = test_level
        self.unlabelled_source = unlabelled_source
        self.unlabelled_reader_kwargs = dict(self.reader_kwargs if unlabelled_reader_kwargs is None
                                             else unlabelled_reader_kwargs)
        self.unlabelled_dataset = None
        self.split: Split | None = None
        self.split_path: Path | None = None
        self.statistics = Statistics()
        self.metadata: dict = {}
        self.train_dataset = self.val_dataset = self.test_dataset = None

    @staticmethod
    def _standardize_modes(standardize) -> dict[str, bool | None]:
        if standardize is None:
            return {}
        if isinstance(standardize, dict):
            bad = {k: v for k, v in standardize.items() if v not in _STANDARDIZE_MODES}
            if bad:
                raise ValueError(f"standardize modes must be one of {list(_STANDARDIZE_MODES)}, got {bad}")
            return {k: _STANDARDIZE_MODES[v] for k, v in standardize.items()}
        return {k: None for k in standardize}

    @staticmethod
    def _check_sources(source, levels: list[str]):
        if len(set(levels)) != len(levels):
            raise ValueError(f"levels must be distinct, got {levels}")
        if isinstance(source, str):
            if levels:
                raise ValueError("with levels, source must be a list of {source, level, reader_kwargs} (which "
                                 f"level each file's labels are at), not the single path {source!r}")
            return source
        if not levels:
            if all(isinstance(entry, str) for entry in source) and source:
                return list(source)  # files of one level, joined
            raise ValueError("without levels, source is a path or a list of paths of one level of theory; a list "
                             "of {source, level, reader_kwargs} is for multi-fidelity training: give levels too "
                             "(the levels of theory, primary first)")
        sources = [dict(entry) for entry in source]
        for entry in sources:
            unknown = set(entry) - {"source", "level", "reader_kwargs"}
            if "source" not in entry or "level" not in entry or unknown:
                raise ValueError(f"each source of a multi-fidelity data module is {{source, level, reader_kwargs}}, "
                                 f"got {entry}")
            if entry["level"] not in levels:
                raise ValueError(f"source {entry['source']!r} is at level {entry['level']!r}, which is not one of "
                                 f"levels {levels}")
        return sources

    def _read(self, source: str, reader_kwargs: dict[str, Any]) -> AtomicDataset:
        dataset = read_structures(source, dtype=self.dtype, **reader_kwargs)
        dataset.require_nonempty(f"{source!r} with reader arguments {reader_kwargs} gave no structures")
        self._check_keys(dataset, source)
        return dataset

    def _read_source(self) -> AtomicDataset:
        if isinstance(self.source, str):
            return self._read(self.source, self.reader_kwargs)
        if not self.levels:
            return self._read_files_of_one_level(self.source)
        structures, metadata = [], {"sources": []}
        for entry in self.source:
            part = self._read(entry["source"], {**self.reader_kwargs, **dict(entry.get("reader_kwargs") or {})})
            fidelity = self.levels.index(entry["level"])
            for data in part.raw:
                data[keys.FIDELITY] = torch.tensor([fidelity])
                structures.append(data)
            metadata["sources"].append({**part.metadata, "level": entry["level"]})
        # structures of different sources must batch together: the same keys everywhere
        check_consistent_keys(structures, " + ".join(str(entry["source"]) for entry in self.source))
        return AtomicDataset(structures, metadata=metadata)

    def _read_files_of_one_level(self, paths: list[str]) -> AtomicDataset:
        parts = [self._read(path, self.reader_kwargs) for path in paths]
        first = parts[0].metadata
        for path, part in zip(paths[1:], parts[1:]):
            if "hamiltonian" in first or "hamiltonian" in part.metadata:
                if "hamiltonian" not in first or "hamiltonian" not in part.metadata:
                    raise ValueError(f"{path} and {paths[0]} cannot be joined: only one is a Hamiltonian file")
                try:
                    first["hamiltonian"].check_compatible(part.metadata["hamiltonian"])
                except ValueError as error:
                    raise ValueError(f"{path} cannot be joined to {paths[0]}: {error}") from error
        structures = [data for part in parts for data in part.raw]
        check_consistent_keys(structures, " + ".join(paths))
        return AtomicDataset(structures, metadata={**first, "source": " + ".join(paths),
                                                   "sources": [part.metadata for part in parts]})

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:  # fit, then test: read once
            return
        dataset = self._read_source()
        self.metadata = dataset.metadata

        n = len(dataset)
        if self.split_file is not None:
            split = load_split(self.split_file, n=n)
        else:
            method = self.split_spec.get("method")
            split = make_split(self.split_spec, n=n,
                               n_atoms=dataset.n_atoms() if method == "size" else None,
                               groups=group_labels(dataset.raw, self.split_spec.get("key"))
                               if method == "group" else None)
            split.check(n)
        self.split = split
        self._save_split(split)

        corrections, statistics = [], {}
        train_raw = dataset.subset(split.train, transform=None).require_nonempty(
            f"the split {split} leaves no training structures")
        for key in self.reference_energies:
            if not self.levels:
                references = fit_reference_energies(train_raw, key)
                corrections.append(SubtractReferenceEnergies(references, key))
                statistics.setdefault(key, {})["reference_energies"] = references
                continue
            per_level = {}
            for fidelity, level in enumerate(self.levels):
                at_level = [data for data in train_raw.raw if int(data[keys.FIDELITY]) == fidelity]
                if not at_level:
                    raise ValueError(f"the training set has no structure at level {level!r}; every level needs "
                                     "training structures to fit its reference energies")
                per_level[level] = fit_reference_energies(at_level, key)
                corrections.append(SubtractReferenceEnergies(per_level[level], key, fidelity=fidelity))
            statistics.setdefault(key, {}).update(reference_energies=per_level[self.levels[0]],
                                                  level_reference_energies=per_level)
        train_corrected = dataset.subset(split.train, transform=Compose(corrections) if corrections else None)
        for key, per_atom in self.standardize.items():
            stats = compute_statistics(train_corrected, key, per_atom)
            if not stats["std"] > 0:
                raise ValueError(f"{key!r} is constant on the training set; it cannot be standardised")
            statistics.setdefault(key, {}).update(stats)
        self.statistics = Statistics(statistics)

        transform = RadiusGraph(self.cutoff) if self.cutoff is not None else None
        self.train_dataset = dataset.subset(split.train, transform)
        self.val_dataset = dataset.subset(split.val, transform)
        self.test_dataset = dataset.subset(split.test, transform)
        if self.test_source is not None:
            if len(split.test):
                raise ValueError(f"test_source {self.test_source!r} is the test set, but the split also makes one "
                                 f"of {len(split.test)} structures; give the split two sizes (train, val)")
            test = self.read_test_source()
            self.test_dataset = test.subset(range(len(test)), transform)
        if self.unlabelled_source is not None:
            unlabelled = read_structures(self.unlabelled_source, dtype=self.dtype, **self.unlabelled_reader_kwargs)
            unlabelled.require_nonempty(f"unlabelled_source {self.unlabelled_source!r} gave no structures")
            self.unlabelled_dataset = unlabelled.subset(range(len(unlabelled)), transform)

    def read_test_source(self) -> AtomicDataset:
        """The structures of ``test_source``, read and checked as :meth:`setup` reads them, without
        the training data (``zoo.registry.recipe_test_set``)."""
        test = read_structures(self.test_source, dtype=self.dtype, **self.test_reader_kwargs)
        test.require_nonempty(f"test_source {self.test_source!r} gave no structures")
        self._check_keys(test, self.test_source)
        if self.test_level is not None:
            fidelity = torch.tensor([self.levels.index(self.test_level)])
            for data in test.raw:
                data[keys.FIDELITY] = fidelity
        return test

    def _check_keys(self, dataset: AtomicDataset, source: str) -> None:
        required = dict.fromkeys([*self.targets, *self.standardize, *self.reference_energies])
        for i, data in enumerate(dataset.raw):
            missing = [key for key in required if key not in data]
            if missing:
                raise ValueError(
                    f"structure {i} of {source!r} has no {missing} (targets {self.targets}); "
                    f"available keys: {sorted(data.keys())}"
                )

    def _save_split(self, split: Split) -> None:
        trainer = self.trainer
        folder = self.split_dir
        if folder is None and trainer is not None:
            folder = trainer.log_dir
        if folder is None:
            return
        self.split_path = Path(folder) / SPLIT_FILE
        if trainer is None or trainer.is_global_zero:
            split.save(self.split_path)

    def _loader(self, dataset, name: str, shuffle: bool, batch_size: int) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for data loaders")
        if name == "training":
            dataset.require_nonempty(f"the training set of {self.source!r} has no structures")
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        labelled = self._loader(self.train_dataset, "training", True, self.batch_size)
        if self.unlabelled_dataset is None:
            return labelled
        return {"labelled": labelled, "unlabelled": self._loader(self.unlabelled_dataset, "unlabelled", True,
                                                                 self.batch_size)}

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "validation", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test", False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test", False, self.eval_batch_size)
