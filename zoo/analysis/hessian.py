"""Hessian-vector products of a loss with respect to a chosen subset of a model's parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

import torch


def select_parameters(module: torch.nn.Module, patterns: Sequence[str] | None = None) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters of ``module`` whose names match any of ``patterns``.

    Args:
        module: e.g. a task, whose parameter names start with ``model.``.
        patterns: shell-style patterns (:func:`fnmatch.fnmatchcase`) such as ``"model.message.*"``;
            ``None`` selects every trainable parameter.

    Raises:
        ValueError: a pattern matches no trainable parameter (the available names are listed),
            or nothing is selected.
    """
    named = {name: p for name, p in module.named_parameters() if p.requires_grad}
    if patterns is None:
        selected = named
    else:
        unmatched = [pattern for pattern in patterns if not any(fnmatchcase(n, pattern) for n in named)]
        if unmatched:
            raise ValueError(f"parameter patterns {unmatched} match no trainable parameter; "
                             f"the names are: {sorted(named)}")
        selected = {n: p for n, p in named.items() if any(fnmatchcase(n, pattern) for pattern in patterns)}
    if not selected:
        raise ValueError(f"{type(module).__name__} has no trainable parameters to analyse")
    return selected


class HessianOperator:
    """``v -> H v`` for the Hessian H of ``loss`` with respect to ``parameters``, on flat vectors.

    The gradient is computed once with ``create_graph=True``; every product is then one more
    backward pass through it (Pearlmutter's trick: ``H v = d(g · v)/dθ``), so the graph of
    ``loss`` stays in memory until the operator is dropped. Vectors are flat, in the order of
    ``parameters``, with :attr:`dim` entries.

    Args:
        loss: a scalar that depends on ``parameters`` through a graph (not detached).
        parameters: ``{name: parameter}`` (see :func:`select_parameters`) or a list of tensors.

    Raises:
        ValueError: ``loss`` is not a scalar, or some parameters receive no gradient from it
            (they are named: drop them from the subset, or check that the loss uses them).
    """

    def __init__(self, loss: torch.Tensor, parameters: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]):
        if loss.numel() != 1:
            raise ValueError(f"the loss must be a scalar, got shape {tuple(loss.shape)}")
        if not loss.requires_grad:
            raise ValueError("the loss does not depend on any parameter (it has no autograd graph)")
        if isinstance(parameters, Mapping):
            self.names, self.parameters = list(parameters), list(parameters.values())
        else:
            self.parameters = list(parameters)
            self.names = [f"parameter {i}" for i in range(len(self.parameters))]
        if not self.parameters:
            raise ValueError("no parameters given")
        gradients = torch.autograd.grad(loss, self.parameters, create_graph=True, allow_unused=True)
        unused = [name for name, g in zip(self.names, gradients) if g is None]
        if unused:
            raise ValueError(f"parameters {unused} receive no gradient from the loss, so their Hessian "
                             "block is undefined; leave them out of the parameter subset")
        self.gradient = torch.cat([g.reshape(-1) for g in gradients])
        self.dim = self.gradient.numel()

    @property
    def dtype(self) -> torch.dtype:
        return self.gradient.dtype

    @property
    def device(self) -> torch.device:
        return self.gradient.device

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a flat vector of {self.dim} entries, got shape {tuple(vector.shape)}")
        if not self.gradient.requires_grad:
            # the loss is at most linear in these parameters: its Hessian is exactly zero
            return torch.zeros_like(vector)
        products = torch.autograd.grad(self.gradient, self.parameters, grad_outputs=vector.to(self.dtype),
                                       retain_graph=True, allow_unused=True)
        # a parameter the gradient does not depend on has a zero row in H
        return torch.cat([(torch.zeros_like(p) if hv is None else hv).reshape(-1)
                          for p, hv in zip(self.parameters, products)]).detach()


def hessian_vector_product(loss: torch.Tensor, parameters, vector: torch.Tensor) -> torch.Tensor:
    """One Hessian-vector product; build a :class:`HessianOperator` to reuse the gradient graph."""
    return HessianOperator(loss, parameters)(vector)
