r"""Generators (push-forwards of a latent Gaussian, and a parametric Gaussian mixture) and critics.

A generator is a ``torch.nn.Module`` with ``latent_dim`` and ``sample(n, generator=None)``: it draws
:math:`z \sim \mathcal N(0, I)` from the given ``torch.Generator`` (reproducible) and returns
:math:`g_\theta(z)`, ``(n, D)``, differentiable in :math:`\theta`. A :class:`GaussianMixtureGenerator` returns
``(x, a)``: stratified samples with weights :math:`a` carrying the mixture proportions, so that the proportions
are learned through the loss's weights (a discrete draw has no gradient).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MLP", "ConvFeatures", "ConvGenerator", "GaussianMixtureGenerator", "MLPGenerator", "latent"]


def latent(n: int, dim: int, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` standard Gaussian latent codes ``(n, dim)`` on the device / dtype of ``like``."""
    gen_device = generator.device if generator is not None else like.device
    z = torch.randn(n, dim, generator=generator, device=gen_device, dtype=like.dtype)
    return z.to(like.device)


def _check_int(v, name, low=1):
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")


def MLP(in_dim: int, out_dim: int, hidden=(256, 256), slope: float = 0.2) -> nn.Sequential:
    """A plain MLP with LeakyReLU activations (no normalisation: safe for gradient penalties).

    Example:
        >>> MLP(2, 1, hidden=(8,))(torch.zeros(5, 2)).shape
        torch.Size([5, 1])
    """
    _check_int(in_dim, "in_dim")
    _check_int(out_dim, "out_dim")
    layers, d = [], in_dim
    for h in hidden:
        _check_int(h, "hidden")
        layers += [nn.Linear(d, h), nn.LeakyReLU(slope)]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, out_dim))


_OUTPUTS = {"sigmoid": nn.Sigmoid, "identity": nn.Identity, "tanh": nn.Tanh}


class _Sampler(nn.Module):
    latent_dim: int

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``g(z)``, ``z ~ N(0, I)`` drawn from ``generator``."""
        _check_int(n, "n")
        return self(latent(n, self.latent_dim, next(self.parameters()), generator))


class MLPGenerator(_Sampler):
    r"""A fully connected push-forward :math:`g_\theta: \mathbb R^{d_z} \to \mathbb R^D` of :math:`\mathcal N(0, I)`.

    Args:
        latent_dim: :math:`d_z`; out_dim: D; hidden: widths of the hidden layers.
        output: ``"sigmoid"`` (images in [0, 1]), ``"identity"`` (point data) or ``"tanh"``.

    Example:
        >>> g = MLPGenerator(2, 64, hidden=(32,))
        >>> g.sample(10, torch.Generator().manual_seed(0)).shape
        torch.Size([10, 64])
    """

    def __init__(self, latent_dim: int, out_dim: int, hidden=(256, 256), output: str = "sigmoid"):
        super().__init__()
        if output not in _OUTPUTS:
            raise ValueError(f"output: expected one of {sorted(_OUTPUTS)}, got {output!r}")
        self.latent_dim, self.out_dim = latent_dim, out_dim
        self.net = nn.Sequential(MLP(latent_dim, out_dim, hidden), _OUTPUTS[output]())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvGenerator(_Sampler):
    r"""A small deconvolutional generator for square images of side 8 or 28, output in [0, 1], flattened.

    A linear layer maps :math:`z` to ``channels`` maps of side ``side // 4`` (2 or 7), then two transposed
    convolutions double the side twice.

    Example:
        >>> ConvGenerator(8, side=28).sample(3).shape
        torch.Size([3, 784])
    """

    def __init__(self, latent_dim: int, side: int = 28, channels: int = 64):
        super().__init__()
        if side not in (8, 28):
            raise ValueError(f"side: expected 8 or 28, got {side!r}")
        self.latent_dim, self.side, self.s0, self.channels = latent_dim, side, side // 4, channels
        self.fc = nn.Sequential(nn.Linear(latent_dim, channels * self.s0**2), nn.LeakyReLU(0.2))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(channels // 2, 1, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).reshape(len(z), self.channels, self.s0, self.s0)
        return self.net(h).reshape(len(z), self.side**2)


class GaussianMixtureGenerator(nn.Module):
    r"""A parametric model: a K-component Gaussian mixture with learned means, scales and proportions.

    .. math::
        \mu_\theta = \sum_k \pi_k\, \mathcal N(m_k, \mathrm{diag}(\sigma_k^2)), \qquad
        \pi = \mathrm{softmax}(\ell)

    ``sample(n)`` draws ``n // K`` (at least 1) reparametrised points per component and returns ``(x, a)`` with
    weights :math:`a_i = \pi_{k(i)} / n_{k(i)}`: an unbiased, differentiable estimate of the mixture.

    Example:
        >>> gm = GaussianMixtureGenerator(4, 2)
        >>> x, a = gm.sample(40, torch.Generator().manual_seed(0))
        >>> tuple(x.shape), round(float(a.sum()), 6)
        ((40, 2), 1.0)
    """

    def __init__(self, n_components: int, dim: int, init_scale: float = 0.1, init_means: torch.Tensor | None = None):
        super().__init__()
        _check_int(n_components, "n_components")
        _check_int(dim, "dim")
        self.latent_dim, self.n_components, self.dim = dim, n_components, dim
        means = torch.rand(n_components, dim) if init_means is None else torch.as_tensor(init_means).clone()
        if tuple(means.shape) != (n_components, dim):
            raise ValueError(f"init_means: expected shape (K, D) = ({n_components}, {dim}), got {tuple(means.shape)}")
        self.means = nn.Parameter(means.float())
        self.log_scales = nn.Parameter(torch.full((n_components, dim), math.log(init_scale)))
        self.logits = nn.Parameter(torch.zeros(n_components))

    @property
    def proportions(self) -> torch.Tensor:
        """The mixture proportions :math:`\\pi` ``(K,)``."""
        return torch.softmax(self.logits, 0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_int(n, "n")
        k = self.n_components
        per = max(1, n // k)
        comp = torch.arange(k, device=self.means.device).repeat_interleave(per)
        z = latent(k * per, self.dim, self.means, generator)
        x = self.means[comp] + torch.exp(self.log_scales[comp]) * z
        a = self.proportions[comp] / per
        return x, a


class ConvFeatures(nn.Module):
    """A small convolutional feature map (critic or learned-cost features) on flattened square images.

    Example:
        >>> ConvFeatures(28, 16)(torch.rand(2, 784)).shape
        torch.Size([2, 16])
    """

    def __init__(self, side: int, out_dim: int, channels: int = 32):
        super().__init__()
        self.side = side
        s = side
        for _ in range(2):
            s = (s + 2 * 1 - 4) // 2 + 1
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * channels * s * s, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(len(x), 1, self.side, self.side))
