# The two commands of the README: `make demo` and `make test`. Each creates its own virtual
# environment; torch is installed as the CPU wheel torch==2.13.0 first, so that no dependency
# pulls the CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.zoo-installed

.PHONY: install demo test docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/zoo tour

test: $(STAMP)
	$(PY) -m pytest -q tests

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) site

# Datasets the project generates (see data/README.md). Resumable: rerun to continue.
ZOO := $(VENV)/bin/zoo
.PHONY: data-water

data/water/water_md500K.extxyz: | $(STAMP)
	$(ZOO) sample --smiles O --optimize --md --temperature 500 --frames 500 --interval 20 --seed 0 -o $@

# an independent trajectory (seed 1) for testing on geometries no training run saw
data/water/water_md500K_test.extxyz: | $(STAMP)
	$(ZOO) sample --smiles O --optimize --md --temperature 500 --frames 200 --interval 20 --seed 1 -o $@

data-water: data/water/water_md500K.extxyz data/water/water_md500K_test.extxyz
	for part in "" _test; do OMP_NUM_THREADS=1 $(ZOO) label data/water/water_md500K$$part.extxyz --method rks \
		--xc b3lyp5 --basis def2-svp --grid 3 --properties fock,overlap,density_matrix,orbital_energies \
		-o data/water/water_b3lyp5_def2svp$$part.h5 || exit 1; done

# MD17-like force-field molecules: 1000 training and 200 test frames from two independent 500 K
# GFN2-xTB trajectories, labelled at rMD17's level (PBE/def2-SVP). Test set first, so that a
# partial run already has its independent test set.
# $(1): name, $(2): SMILES, $(3): more `zoo sample` options
define md17_molecule
data/$(1)/$(1)_md500K_train.extxyz: | $$(STAMP)
	$$(ZOO) sample --smiles '$(2)' $(3) --optimize --md --temperature 500 --frames 1000 --interval 20 --seed 0 -o $$@

data/$(1)/$(1)_md500K_test.extxyz: | $$(STAMP)
	$$(ZOO) sample --smiles '$(2)' $(3) --optimize --md --temperature 500 --frames 200 --interval 20 --seed 1 -o $$@

.PHONY: data-$(1)
data-$(1): data/$(1)/$(1)_md500K_train.extxyz data/$(1)/$(1)_md500K_test.extxyz
	for split in test train; do OMP_NUM_THREADS=1 $$(ZOO) label data/$(1)/$(1)_md500K_$$$$split.extxyz \
		--method rks --xc pbe --basis def2-svp --grid 3 --properties energy,forces \
		-o data/$(1)/$(1)_pbe_def2svp_$$$$split.extxyz || exit 1; done
endef

$(eval $(call md17_molecule,ethanol,CCO))
# The Z-enol with its intramolecular hydrogen bond (O-O 2.6 A), as in MD17: the lowest xTB minimum
# of ten conformers ("OC=CC=O", or a single embedding, can give an open enol with O-O 4 A).
$(eval $(call md17_molecule,malonaldehyde,O/C=C\C=O,--conformers 10))

# Paracetamol, the fine-tuning benchmark's larger held-out molecule (20 atoms, 11 heavy: in no QM9
# row): sampled as above but fewer frames, since its labels cost about a CPU-minute per frame even
# with RI-J density fitting: 300 training frames (the benchmark's N goes to 250, plus 50 for
# validation) and 100 test frames, one every 40 steps of an independent trajectory.
PARACETAMOL := data/paracetamol/paracetamol
$(PARACETAMOL)_md500K_train.extxyz: | $(STAMP)
	$(ZOO) sample --smiles 'CC(=O)Nc1ccc(O)cc1' --conformers 10 --optimize --md --temperature 500 --frames 300 \
		--interval 20 --seed 0 -o $@
$(PARACETAMOL)_md500K_test.extxyz: | $(STAMP)
	$(ZOO) sample --smiles 'CC(=O)Nc1ccc(O)cc1' --conformers 10 --optimize --md --temperature 500 --frames 100 \
		--interval 40 --seed 1 -o $@
.PHONY: data-paracetamol
data-paracetamol: $(PARACETAMOL)_md500K_train.extxyz $(PARACETAMOL)_md500K_test.extxyz
	for split in test train; do OMP_NUM_THREADS=1 $(ZOO) label $(PARACETAMOL)_md500K_$$split.extxyz --method rks \
		--xc pbe --basis def2-svp --grid 3 --density-fitting --properties energy,forces \
		-o $(PARACETAMOL)_pbe_def2svp_$$split.extxyz || exit 1; done

# Heterogeneous data for multi-task physical consistency (Ren et al., NeurIPS 2024; see the
# "consistency" section of data/README.md). Split by molecule: every tenth qm9pack row is a test
# molecule (QM9's own B3LYP/6-31G(2df,p) geometry, qm9_test.extxyz), never labelled. For the
# training molecules: GFN2-xTB minima of RDKit conformers (the cheap structures, all of them) and
# B3LYP/6-31G* energies and forces at the minima of every sixth row and at one randomly displaced
# copy of each (hours; every step resumes where it stopped). The minima are labelled first, so that
# a partial run already has every training molecule's cheap structure in qm9_train.extxyz.
CONSISTENCY ?= data/consistency
QM9_ROWS ?= 0:2000
QM9_TEST_ROWS ?= 9:2000:10
QM9_DFT_ROWS ?= 0:2000:6
.PHONY: data-consistency

data-consistency: | $(STAMP)
	OMP_NUM_THREADS=1 $(ZOO) sample-qm9 --rows $(QM9_ROWS) --exclude-rows $(QM9_TEST_ROWS),$(QM9_DFT_ROWS) --seed 0 \
		-o $(CONSISTENCY)/qm9_xtb.extxyz --reference-out $(CONSISTENCY)/qm9_xtb_reference.extxyz
	OMP_NUM_THREADS=1 $(ZOO) sample-qm9 --rows $(QM9_DFT_ROWS) --exclude-rows $(QM9_TEST_ROWS) --seed 0 \
		-o $(CONSISTENCY)/qm9_dft_xtb.extxyz --reference-out $(CONSISTENCY)/qm9_dft_reference.extxyz
	OMP_NUM_THREADS=1 $(ZOO) sample-qm9 --rows $(QM9_TEST_ROWS) --seed 0 \
		-o $(CONSISTENCY)/qm9_test_xtb.extxyz --reference-out $(CONSISTENCY)/qm9_test.extxyz
	$(ZOO) sample --xyz $(CONSISTENCY)/qm9_dft_xtb.extxyz --all-frames --displace random -n 1 \
		--amplitude 0.05 --seed 0 -o $(CONSISTENCY)/qm9_dft_perturbed.extxyz
	for part in dft_xtb dft_perturbed; do OMP_NUM_THREADS=1 $(ZOO) label $(CONSISTENCY)/qm9_$$part.extxyz \
		--method rks --xc b3lyp --basis '6-31g*' --grid 3 --properties energy,forces \
		-o $(CONSISTENCY)/qm9_$${part}_b3lyp.extxyz || exit 1; done
	cat $(CONSISTENCY)/qm9_xtb.extxyz $(CONSISTENCY)/qm9_dft_xtb_b3lyp.extxyz \
		$(CONSISTENCY)/qm9_dft_perturbed_b3lyp.extxyz > $(CONSISTENCY)/qm9_train.extxyz.tmp
	mv $(CONSISTENCY)/qm9_train.extxyz.tmp $(CONSISTENCY)/qm9_train.extxyz

# Same-conformer cheap structures of the same training molecules (issue 21): QM9's own geometry
# relaxed with GFN2-xTB, so that the cheap structure keeps QM9's conformer, as PubChemQC's PM6 and
# B3LYP structures share theirs; more equilibrium structures for the generator. About 4 minutes.
.PHONY: data-consistency-sameconf

data-consistency-sameconf: | $(STAMP)
	OMP_NUM_THREADS=1 $(ZOO) sample-qm9 --rows $(QM9_ROWS) --exclude-rows $(QM9_TEST_ROWS),$(QM9_DFT_ROWS) --start qm9 \
		-o $(CONSISTENCY)/qm9_xtb_sameconf.extxyz --reference-out $(CONSISTENCY)/qm9_xtb_reference_sameconf.extxyz
	OMP_NUM_THREADS=1 $(ZOO) sample-qm9 --rows $(QM9_DFT_ROWS) --exclude-rows $(QM9_TEST_ROWS) --start qm9 \
		-o $(CONSISTENCY)/qm9_dft_xtb_sameconf.extxyz --reference-out $(CONSISTENCY)/qm9_dft_reference_sameconf.extxyz

# QM9's own geometries of 32,207 molecules outside the rows above (every fourth qm9pack row from
# 2000), for the refiner that learns the target's geometry (the recipe
# consistency_refiner_qm9_geometries, issue 21). No xTB or DFT: a few minutes on one core.
.PHONY: data-consistency-qm9-geometries

data-consistency-qm9-geometries: | $(STAMP)
	OMP_NUM_THREADS=1 $(ZOO) sample-qm9 --rows 2000:130831:4 --reference-only --workers 0 \
		--reference-out $(CONSISTENCY)/qm9_geometries.extxyz

# Pretraining data of a general organic force field (issue 22): GFN2-xTB MD frames of every 40th
# qm9pack molecule (3271, H/C/N/O/F, up to 9 heavy atoms), each started from the xTB relaxation of
# QM9's own geometry; malonaldehyde (the fine-tuning benchmark's held-out molecule) is left out by
# its graph. xTB energies and forces are kept as xtb_energy/xtb_forces (a multi-fidelity source,
# docs/force_field.md). About 0.2 s per start structure and 1.5 s per molecule of MD on one core.
# Held-out test molecules: every 400th row from 20, the same sampling with another MD seed, and
# PBE/def2-SVP labels (RI-J) of the first MD frame of every fifth test molecule (66 frames). The
# files (~50 MB) are not committed, except the test labels; every step resumes.
ORGANIC ?= data/organic
HELD_OUT_SMILES ?= O/C=C\C=O,O=CCC=O
ORGANIC_STARTS := OMP_NUM_THREADS=1 $(ZOO) sample-qm9 --rows 0:130831:40 --start qm9 --exclude-smiles '$(HELD_OUT_SMILES)' \
	--workers 0 -o $(ORGANIC)/qm9_starts.extxyz --reference-out $(ORGANIC)/qm9_starts_qm9.extxyz
ORGANIC_MD := --all-frames --md --temperature 500 --equilibrate 100 --interval 30 --workers 0
PBE_LABELS := --method rks --xc pbe --basis def2-svp --grid 3 --density-fitting --properties energy,forces --workers 1
.PHONY: data-organic data-organic-dft

data-organic: | $(STAMP)
	$(ORGANIC_STARTS)
	OMP_NUM_THREADS=1 $(ZOO) sample --xyz $(ORGANIC)/qm9_starts.extxyz $(ORGANIC_MD) -n 5 --seed 0 -o $(ORGANIC)/qm9_md500.extxyz
	OMP_NUM_THREADS=1 $(ZOO) sample-qm9 --rows 20:130831:400 --start qm9 --exclude-smiles '$(HELD_OUT_SMILES)' \
		--workers 0 -o $(ORGANIC)/test_starts.extxyz --reference-out $(ORGANIC)/test_starts_qm9.extxyz
	OMP_NUM_THREADS=1 $(ZOO) sample --xyz $(ORGANIC)/test_starts.extxyz $(ORGANIC_MD) -n 5 --seed 1 -o $(ORGANIC)/test_md500.extxyz
	OMP_NUM_THREADS=1 $(ZOO) label $(ORGANIC)/test_md500.extxyz $(PBE_LABELS) --shard 0/25 -o $(ORGANIC)/test_md500_pbe_def2svp.extxyz
	rm -f $(ORGANIC)/test_md500_pbe_def2svp.extxyz
	$(ZOO) label --merge $(ORGANIC)/test_md500_pbe_def2svp.shard-0-of-25.extxyz -o $(ORGANIC)/test_md500_pbe_def2svp.extxyz

# The DFT level of the multi-fidelity stage (recipe organic_multifidelity): the
# first MD frame of two training molecules in five (starts k with k % 5 in {0, 1}; the same frames
# as shards 0 and 5 of 25 of qm9_md500.extxyz, as molecule k's MD is seeded with seed + k and -n 1
# stops after its first frame), 1308 frames, committed as qm9_md500_dft_frames.extxyz so that the
# labelling needs no MD. PBE/def2-SVP labels, 20-100 s a frame on one core, in two shards (one per
# core), committed as they grow; `zoo label` resumes where the committed shard stops.
data-organic-dft: | $(STAMP)
	test -f $(ORGANIC)/qm9_md500_dft_frames.extxyz || { $(ORGANIC_STARTS) && for s in 0 1; do \
		OMP_NUM_THREADS=1 $(ZOO) sample --xyz $(ORGANIC)/qm9_starts.extxyz $(ORGANIC_MD) -n 1 --seed 0 --shard $$s/5 \
		-o $(ORGANIC)/qm9_md500_first.extxyz || exit 1; done && $(ZOO) sample --merge \
		$(ORGANIC)/qm9_md500_first.shard-0-of-5.extxyz $(ORGANIC)/qm9_md500_first.shard-1-of-5.extxyz \
		-o $(ORGANIC)/qm9_md500_dft_frames.extxyz; }
	for s in 0 1; do OMP_NUM_THREADS=1 $(ZOO) label $(ORGANIC)/qm9_md500_dft_frames.extxyz $(PBE_LABELS) --shard $$s/2 \
		-o $(ORGANIC)/qm9_md500_pbe_def2svp.extxyz || exit 1; done
	rm -f $(ORGANIC)/qm9_md500_pbe_def2svp.extxyz
	$(ZOO) label --merge $(ORGANIC)/qm9_md500_pbe_def2svp.shard-0-of-2.extxyz $(ORGANIC)/qm9_md500_pbe_def2svp.shard-1-of-2.extxyz \
		-o $(ORGANIC)/qm9_md500_pbe_def2svp.extxyz

# QM9-derived Hamiltonians for self-consistency training, QH9's protocol (b3lyp5/def2-SVP, grid 3,
# QM9's own geometries), out of distribution by size like QH9-stable-ood: labelled small molecules
# (<= 6 heavy atoms, every fourth of qm9pack rows 0-999), unlabelled larger ones (8 heavy atoms,
# rows 4000-5999; geometries only, for SCT) and a labelled test set of larger molecules never seen
# in training (every 40th of those rows); then 897 more labelled small molecules (every other QM9
# molecule with <= 6 heavy atoms and every tenth with 7 of rows 818-5999: 1094 with small).
# Labelling on one core: 2-35 s per small molecule (17 s on average, small's 197 and small_extra's
# first 342 alike) and 30-60 s per large one, about 6 core-hours in all, half that on two cores
# with `--shard I/2`; resumable. The label files (~90 MB) are not committed.
QH9 ?= data/qm9_hamiltonian
.PHONY: data-qm9-hamiltonian

data-qm9-hamiltonian: | $(STAMP)
	$(ZOO) sample-qm9 --reference-only --rows 0:1000:4 --max-heavy-atoms 6 --reference-out $(QH9)/small.extxyz
	$(ZOO) sample-qm9 --reference-only --rows 4000:6000 --exclude-rows 4000:6000:40 --min-heavy-atoms 8 \
		--reference-out $(QH9)/large_unlabelled.extxyz
	$(ZOO) sample-qm9 --reference-only --rows 4000:6000:40 --min-heavy-atoms 8 --reference-out $(QH9)/large_test.extxyz
	$(ZOO) sample-qm9 --reference-only --rows 0:818 --exclude-rows 0:1000:4 --max-heavy-atoms 6 \
		--reference-out $(QH9)/small_extra.extxyz
	$(ZOO) sample-qm9 --reference-only --rows 818:6000:10 --min-heavy-atoms 7 --max-heavy-atoms 7 \
		--reference-out $(QH9)/small_extra.extxyz
	for part in small large_test small_extra; do OMP_NUM_THREADS=1 $(ZOO) label $(QH9)/$$part.extxyz \
		--method rks --xc b3lyp5 --basis def2-svp --grid 3 \
		--properties fock,overlap,density_matrix,orbital_energies \
		-o $(QH9)/$${part}_b3lyp5_def2svp.h5 || exit 1; done

# The Hamiltonian family's second out-of-distribution test: the drug-like molecules of
# data/druglike/druglike.smi (10-25 atoms, 10-14 heavy atoms, so none in QM9), each the lowest
# GFN2-xTB minimum of 3 RDKit conformers (druglike_xtb.extxyz, committed), labelled like the QM9
# molecules (druglike_b3lyp5_def2svp.h5, not committed: ~1-3 CPU-minutes a molecule). Resumable.
DRUGLIKE := data/druglike/druglike
$(DRUGLIKE)_xtb.extxyz: $(DRUGLIKE).smi | $(STAMP)
	$(ZOO) sample --smiles-file $< --conformers 3 --optimize --seed 0 -o $@

.PHONY: data-druglike-hamiltonian
data-druglike-hamiltonian: $(DRUGLIKE)_xtb.extxyz
	OMP_NUM_THREADS=1 $(ZOO) label $< --method rks --xc b3lyp5 --basis def2-svp --grid 3 \
		--properties fock,overlap,density_matrix,orbital_energies -o $(DRUGLIKE)_b3lyp5_def2svp.h5
