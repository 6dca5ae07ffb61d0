"""Loss-landscape analysis: Hessian spectra of a loss with respect to a subset of parameters.

Everything works through Hessian-vector products (double backward), never the Hessian itself,
so it scales to the full parameter count of a model:

- :class:`HessianOperator` / :func:`hessian_vector_product`: ``v -> H v`` for a loss and parameters;
- :func:`top_eigenvalues`: power iteration with deflation (largest in magnitude first);
- :func:`hutchinson_trace`: ``tr H = E[vᵀ H v]`` with Rademacher ``v``;
- :func:`lanczos` and :func:`stochastic_lanczos_quadrature`: the spectral density as Ritz values
  with weights (squared first components of the tridiagonal matrix's eigenvectors);
- :func:`spectral_density`: that density broadened by Gaussians on a grid, for plotting.

The estimators take any ``matvec`` callable on flat vectors, so they apply to explicit matrices too.

MD stability of force fields ("Forces are not enough"): :func:`md_stability`, several trajectories
as one batch with :func:`md_stability_replicas` (:func:`joined_predict` batches any calculator
with per-atom energies), and the pieces in
:mod:`zoo.analysis.md_stability`.
"""

from zoo.analysis.hessian import HessianOperator, hessian_vector_product, select_parameters
from zoo.analysis.md_stability import StabilityResult, joined_predict, md_stability, md_stability_replicas
from zoo.analysis.spectrum import (
    hutchinson_trace,
    lanczos,
    spectral_density,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)

__all__ = [
    "HessianOperator",
    "StabilityResult",
    "hessian_vector_product",
    "hutchinson_trace",
    "joined_predict",
    "lanczos",
    "md_stability",
    "md_stability_replicas",
    "select_parameters",
    "spectral_density",
    "stochastic_lanczos_quadrature",
    "top_eigenvalues",
]
