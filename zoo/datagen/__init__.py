"""Data generation: structures to label, DFT labels, and the runs that make them.

A workflow on top of the physics of :mod:`zoo.qc` and the file formats of :mod:`zoo.data`:

- :mod:`zoo.datagen.sampling`: start structures, GFN2-xTB optimisation, MD and displacements;
- :mod:`zoo.datagen.qm9`: QM9's cheap structures next to its own geometries;
- :mod:`zoo.datagen.sampling_runs`: those over many molecules, resumable and sharded (``zoo sample``,
  ``zoo sample-qm9``);
- :mod:`zoo.datagen.labelling`: PySCF labels into extended XYZ or the HDF5 Hamiltonian format
  (``zoo label``), one structure per task (:mod:`zoo.datagen.label_task`), in the files of
  :mod:`zoo.datagen.label_files`;
- :mod:`zoo.datagen.jobs`: those tasks on dask.distributed workers, and the one process that writes;
- :mod:`zoo.datagen.files` and :mod:`zoo.datagen.failures`: structure files, shards of job arrays,
  and the failure log of a run;
- :mod:`zoo.datagen.commands`: the command lines.
"""
