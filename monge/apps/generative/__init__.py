r"""Generative models fitted with OT losses: minimum Kantorovich estimation on minibatches.

A generator :math:`g_\theta` pushes a latent Gaussian forward; it is fitted to data by minimising an OT
distance estimated on minibatches of generated and real samples:

- the Sinkhorn generative model (:class:`MKE` with :class:`monge.nn.SinkhornLoss`, gradients unrolled or by
  the envelope theorem), or any other loss (MMD, a Gaussian mixture's parameters: :class:`GaussianMixtureGenerator`);
- a learned cost :math:`c_\varphi(x, y) = \|f_\varphi(x) - f_\varphi(y)\|^2` trained adversarially
  (:class:`LearnedCost`);
- WGAN with gradient penalty (:class:`WGANGP`) and the W_1 dual estimator alone (:func:`fit_w1_dual`).

Data without downloads (:mod:`monge.apps.generative.data`), one training loop (:func:`train`), held-out evaluation against a
floor and a baseline (:func:`evaluate`), figures (:mod:`monge.apps.generative.figures`) and ready-made recipes
(:func:`run_experiment`, used by ``monge train``).
"""

from .data import Dataset, load, load_digits, load_mnist, load_toy, toy
from .evaluate import (
    Metrics,
    evaluate,
    gaussian_baseline,
    held_out_w2,
    label_stats,
    train_classifier,
)
from .losses import (
    LearnedCostLoss,
    W1DualResult,
    fit_w1_dual,
    gradient_penalty,
    w1_dual,
)
from ...nn.generators import (
    MLP,
    ConvFeatures,
    ConvGenerator,
    GaussianMixtureGenerator,
    MLPGenerator,
)
from .recipes import MODELS, build_model, run_experiment
from .train import MKE, WGANGP, LearnedCost, TrainResult, draw, resolve_device, train

__all__ = [
    "MKE",
    "MLP",
    "MODELS",
    "WGANGP",
    "ConvFeatures",
    "ConvGenerator",
    "Dataset",
    "GaussianMixtureGenerator",
    "LearnedCost",
    "LearnedCostLoss",
    "MLPGenerator",
    "Metrics",
    "TrainResult",
    "W1DualResult",
    "build_model",
    "draw",
    "evaluate",
    "fit_w1_dual",
    "gaussian_baseline",
    "gradient_penalty",
    "held_out_w2",
    "label_stats",
    "load",
    "load_digits",
    "load_mnist",
    "load_toy",
    "resolve_device",
    "run_experiment",
    "toy",
    "train",
    "train_classifier",
    "w1_dual",
]
