"""``torch.compile`` for inference: the tensor cores of the models, compiled in place.

A model's ``forward`` does two kinds of work. Checks of the input (elements, dtypes, shapes) and
the neighbour list depend on the values of the data, and Python decides on them; the message
passing and the heads that follow are tensor operations on shapes that vary from one structure
to the next. Compiling the whole ``forward`` traces the first kind too, and gains nothing (the
graph breaks at every such decision, and guards on the batch object cost more than they save).
So each model class names its *cores*, methods on tensors alone (``COMPILED_CORES``), calls them
through :func:`inference_core`, and :func:`compile_for_inference` compiles exactly those, with
dynamic shapes so that a new number of atoms or edges does not recompile.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import torch

#: Attribute of a module holding its compiled cores, ``{method name: compiled function}``.
_COMPILED = "_compiled_cores"


def inference_core(module: torch.nn.Module, name: str) -> Callable:
    """``module``'s tensor core ``name`` as a bound method: the compiled one after
    :func:`compile_for_inference`, while the module is in eval mode; the plain method otherwise.

    In training mode the plain method runs: a compiled graph does not support the double
    backward that training a force field on forces needs. ``torch.export`` traces the plain method.
    """
    compiled = module.__dict__.get(_COMPILED, {}).get(name)
    if compiled is None or module.training or torch.compiler.is_exporting():
        return getattr(module, name)
    return compiled.__get__(module)


def compile_for_inference(model: torch.nn.Module, dynamic: bool = True, **options) -> torch.nn.Module:
    """Compile ``model``'s inference with ``torch.compile``, in place; returns ``model``.

    Every module of ``model`` that names tensor cores (``COMPILED_CORES``: the equivariant
    backbone's message passing, the Hamiltonian heads, ...) gets them compiled, so that all the
    ways of calling the model use them: ``model(batch)``, ``predict``, ``generate``, ``energy``,
    the ASE calculator of ``as_calculator()``. Input checks and neighbour lists stay in Python.
    The first call of each core compiles it (tens of seconds on a CPU); later calls with other
    numbers of atoms or edges reuse it.

    The compiled cores run while the module is in eval mode (``zoo.load`` returns models in eval
    mode); in training mode the model runs as it was. A compiled core has no second derivative
    (Hessians need the model uncompiled). Compiling switches off, for the whole process,
    AOTAutograd's donated buffers (``torch._functorch.config.donated_buffer``), which would refuse
    the graph of the forces a force field keeps when gradients are enabled. Compile after moving or casting the model
    (``.double()``, ``.to("cuda")``): a copy made afterwards, such as the one
    ``as_calculator(dtype=...)`` makes for another dtype, runs without compiling.

    Args:
        model: a zoo model, or a task (``zoo.load``'s result) holding one.
        dynamic: compile for symbolic numbers of atoms and edges (``torch.compile``'s ``dynamic``).
        options: further keyword arguments of ``torch.compile`` (``backend``, ``mode``, ...).

    Raises:
        TypeError: nothing in ``model`` has a tensor core to compile.
        RuntimeError: the inductor backend on a CPU needs a C++ compiler, and none is found.

    Example::

        task = zoo.load("ethanol-dens-pbe-def2svp")
        zoo.models.compile_for_inference(task)
        atoms.calc = task.as_calculator()   # compiled on its first calculation
    """
    _check_compiler(options.get("backend", "inductor"), model)
    # A force field keeps the graph of its forces (create_graph) whenever its caller has gradients
    # enabled, as a plain model(batch) has. A compiled backward that frees ("donates") its saved
    # tensors refuses that when it runs, outside any call of ours, so donation is off for the
    # process: a memory saving of compiled training, which only a second derivative would need.
    torch._functorch.config.donated_buffer = False
    compiled = 0
    for module in model.modules():
        names = getattr(type(module), "COMPILED_CORES", ())
        if names:
            cores = {name: torch.compile(getattr(type(module), name), dynamic=dynamic, **options) for name in names}
            setattr(module, _COMPILED, cores)
            compiled += len(cores)
    if not compiled:
        raise TypeError(
            f"{type(model).__name__} has no tensor core to compile: compile_for_inference knows the modules of "
            "zoo.models (EquivariantBackbone, HamiltonianModel, ...) that name COMPILED_CORES; for another "
            "module call torch.compile on it yourself"
        )
    return model


def _check_compiler(backend, model: torch.nn.Module) -> None:
    parameter = next(model.parameters(), None)
    on_cpu = parameter is None or parameter.device.type == "cpu"
    if backend == "inductor" and on_cpu and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise RuntimeError(
            "torch.compile's inductor backend generates C++ for the CPU and needs a C++ compiler, but none "
            "(g++, c++, clang++) is on PATH: install one (e.g. apt-get install g++), or pass "
            "backend='aot_eager' to compile without generating code"
        )
