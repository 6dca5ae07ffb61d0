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
.PHONY: data-water data-ethanol

data/water/water_md500K.extxyz: | $(STAMP)
	$(ZOO) sample --smiles O --optimize --md --temperature 500 --frames 500 --interval 20 --seed 0 -o $@

data-water: data/water/water_md500K.extxyz
	OMP_NUM_THREADS=1 $(ZOO) label $< --method rks --xc b3lyp5 --basis def2-svp --grid 3 \
		--properties fock,overlap,density_matrix,orbital_energies -o data/water/water_b3lyp5_def2svp.h5

data/ethanol/ethanol_md500K_train.extxyz: | $(STAMP)
	$(ZOO) sample --smiles CCO --optimize --md --temperature 500 --frames 1000 --interval 20 --seed 0 -o $@

data/ethanol/ethanol_md500K_test.extxyz: | $(STAMP)
	$(ZOO) sample --smiles CCO --optimize --md --temperature 500 --frames 200 --interval 20 --seed 1 -o $@

data-ethanol: data/ethanol/ethanol_md500K_train.extxyz data/ethanol/ethanol_md500K_test.extxyz
	for split in train test; do OMP_NUM_THREADS=1 $(ZOO) label data/ethanol/ethanol_md500K_$$split.extxyz \
		--method rks --xc pbe --basis def2-svp --grid 3 --properties energy,forces \
		-o data/ethanol/ethanol_pbe_def2svp_$$split.extxyz || exit 1; done
