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
	$(VENV)/bin/zoo demo

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

data-water: data/water/water_md500K.extxyz
	OMP_NUM_THREADS=1 $(ZOO) label $< --method rks --xc b3lyp5 --basis def2-svp --grid 3 \
		--properties fock,overlap,density_matrix,orbital_energies -o data/water/water_b3lyp5_def2svp.h5

# MD17-like force-field molecules: 1000 training and 200 test frames from two independent 500 K
# GFN2-xTB trajectories, labelled at rMD17's level (PBE/def2-SVP). Test set first, so that a
# partial run already has its independent test set.
# $(1): name, $(2): SMILES
define md17_molecule
data/$(1)/$(1)_md500K_train.extxyz: | $$(STAMP)
	$$(ZOO) sample --smiles '$(2)' --optimize --md --temperature 500 --frames 1000 --interval 20 --seed 0 -o $$@

data/$(1)/$(1)_md500K_test.extxyz: | $$(STAMP)
	$$(ZOO) sample --smiles '$(2)' --optimize --md --temperature 500 --frames 200 --interval 20 --seed 1 -o $$@

.PHONY: data-$(1)
data-$(1): data/$(1)/$(1)_md500K_train.extxyz data/$(1)/$(1)_md500K_test.extxyz
	for split in test train; do OMP_NUM_THREADS=1 $$(ZOO) label data/$(1)/$(1)_md500K_$$$$split.extxyz \
		--method rks --xc pbe --basis def2-svp --grid 3 --properties energy,forces \
		-o data/$(1)/$(1)_pbe_def2svp_$$$$split.extxyz || exit 1; done
endef

$(eval $(call md17_molecule,ethanol,CCO))
# The Z-enol with its intramolecular hydrogen bond (O-O 2.6 A), as in MD17; "OC=CC=O" embeds the
# extended E-enol instead.
$(eval $(call md17_molecule,malonaldehyde,O/C=C\C=O))
