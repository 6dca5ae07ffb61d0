"""Canonical property keys: every reader writes them, every model and task reads them.

Units follow ASE: positions and cells in Å, energies in eV, forces in eV/Å, dipoles in e·Å.
Quantum-chemistry matrices (Hamiltonian/Fock, overlap, density) and orbital energies stay in
Hartree (atomic units), as PySCF produces them. Per-structure quantities are stored with a
leading dimension of 1 so that batching concatenates them into one row per structure.

Never put "index" or "batch" in a new key's name (nor call it "face"): PyG offsets such
attributes when batching (that is how ``edge_index`` works), which would corrupt any other value.
The one deliberate exception is :data:`BOND_INDEX`, a list of atom pairs like ``edge_index``,
for which that offset is exactly right.
"""

# structure
ATOMIC_NUMBERS = "z"  # [n_atoms] long
POSITIONS = "pos"  # [n_atoms, 3] Å
CELL = "cell"  # [1, 3, 3] Å, rows are lattice vectors
PBC = "pbc"  # [1, 3] bool
N_ATOMS = "n_atoms"  # [1] long

# graph (PyG's names, so that batching offsets edge_index)
EDGE_INDEX = "edge_index"  # [2, n_edges]; row 0 = neighbour (source j), row 1 = centre (target i)
EDGE_CELL_SHIFT = "edge_cell_shift"  # [n_edges, 3] integer lattice shifts of the source atom
BATCH = "batch"  # [n_atoms] structure index, added by batching
EDGE_FEATURES = "edge_features"  # [n_edges, d] invariant features of the edges of edge_index (bond type, ...)

# molecular graph (from the SMILES, see zoo.data.transforms.MolecularGraph)
BOND_INDEX = "bond_index"  # [2, 2 * n_bonds] long, both directions of each bond; offset by PyG like edge_index
BOND_TYPE = "bond_type"  # [2 * n_bonds] long: 1 single, 2 double, 3 triple, 4 aromatic (zoo.data.molgraph)
ATOM_FEATURES = "atom_features"  # [n_atoms, n] float, zoo.data.transforms.ATOM_FEATURES of each atom

# energies and derivatives
ENERGY = "energy"  # [1] eV
FORCES = "forces"  # [n_atoms, 3] eV/Å
STRESS = "stress"  # [1, 3, 3] eV/Å^3
DIPOLE = "dipole"  # [1, 3] e·Å

# quantum chemistry, atomic units, flattened row-major per structure (n_ao * n_ao entries)
N_AO = "n_ao"  # [1] long
HAMILTONIAN = "hamiltonian"  # Fock/Kohn–Sham matrix, Hartree
OVERLAP = "overlap"
DENSITY_MATRIX = "density_matrix"
ORBITAL_ENERGIES = "orbital_energies"  # [n_ao] Hartree
N_ELECTRONS = "n_electrons"  # [1] long

# scalar molecular properties (QM9); units in zoo.data.readers.qm9.QM9_PROPERTIES
MU = "mu"
ALPHA = "alpha"
HOMO = "homo"
LUMO = "lumo"
GAP = "gap"
R2 = "r2"
ZPVE = "zpve"
U0 = "U0"
U = "U"
H = "H"
G = "G"
CV = "cv"

# identifiers carried along for tracing a structure back to its source (not model inputs)
SMILES = "smiles"  # str (a list of str after batching)
QM9_ID = "qm9_id"  # [1] long, the molecule number in QM9 (1..133885, with gaps)
#: str: how a structure was made, e.g. "xtb_optimized" (a cheap equilibrium structure),
#: "perturbed" (off-equilibrium, for energies and forces) or "qm9_reference" (QM9's DFT geometry)
STRUCTURE_KIND = "structure_kind"

#: [1] long: the position of the level of theory of a structure's labels in the ``levels`` of
#: multi-fidelity training (:class:`~zoo.data.AtomicDataModule`, :class:`~zoo.models.ForceFieldModel`)
FIDELITY = "fidelity"

# label masks: a structure read with labels missing carries zeros there and False here
HAS_ENERGY = "has_energy"  # [1] bool
HAS_FORCES = "has_forces"  # [1] bool
HAS_STRESS = "has_stress"  # [1] bool
HAS_DIPOLE = "has_dipole"  # [1] bool
#: Label -> its mask key.
MASKS = {ENERGY: HAS_ENERGY, FORCES: HAS_FORCES, STRESS: HAS_STRESS, DIPOLE: HAS_DIPOLE}

#: Keys that hold one value (or row) per structure rather than per atom.
PER_STRUCTURE = frozenset(
    {ENERGY, DIPOLE, STRESS, CELL, PBC, N_ATOMS, N_AO, N_ELECTRONS,
     MU, ALPHA, HOMO, LUMO, GAP, R2, ZPVE, U0, U, H, G, CV, QM9_ID, FIDELITY, *MASKS.values()}
)
#: Keys that hold one row per atom.
PER_ATOM = frozenset({ATOMIC_NUMBERS, POSITIONS, FORCES, ATOM_FEATURES})
#: Flattened square matrices in the atomic-orbital basis.
AO_MATRICES = frozenset({HAMILTONIAN, OVERLAP, DENSITY_MATRIX})
