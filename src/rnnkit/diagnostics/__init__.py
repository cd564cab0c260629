"""Gradient-flow diagnostics: how far back the gradient of a recurrent model reaches.

* :func:`gradient_flow`: ‖∂ℓ/∂s^<t>‖ for every step and cell, the one-step Jacobian norms and
  their products, the spectrum of W_aa for Elman cells (:mod:`~rnnkit.diagnostics.flow`);
* :func:`write_report`: a table, a JSON file and a log-scale plot (:mod:`~.report`);
* :func:`load_recurrent`: a trained layer back from a checkpoint (:mod:`~.checkpoint`);
* ``rnnkit gradflow`` (:mod:`~.cli`).
"""

from .checkpoint import load_recurrent
from .flow import GradientFlow, Spectrum, gradient_flow, recurrent_spectrum, step_jacobians
from .report import write_report

__all__ = [
    "gradient_flow",
    "GradientFlow",
    "Spectrum",
    "recurrent_spectrum",
    "step_jacobians",
    "write_report",
    "load_recurrent",
]
