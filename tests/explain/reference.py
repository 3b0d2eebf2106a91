"""Slow, obviously-correct LRP references in float64, written from the formulas.

Nothing here shares code with brainlrp's engine: single layers are handled as
dense matrices (the Jacobian of the layer's map, explicit sums over inputs ``i``
and outputs ``j``), and the paper's network is walked layer by layer with
``conv_transpose`` where the engine uses flipped convolutions.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


# -- single layers in matrix form ---------------------------------------------------

def layer_matrix(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``(W, b)``: the layer's map without bias as a dense ``(n_out, n_in)`` float64 matrix
    (the Jacobian, exact because the map is linear) and the bias per output."""
    layer = copy.deepcopy(module).double()
    bias = layer.bias.detach().clone() if layer.bias is not None else None
    if layer.bias is not None:
        layer.bias = None
    basis = torch.eye(int(torch.tensor(in_shape).prod()), dtype=torch.float64)
    with torch.no_grad():
        columns = layer(basis.reshape(-1, *in_shape))  # one input basis vector per row
    w = columns.reshape(columns.shape[0], -1).T.contiguous()
    out_shape = columns.shape[1:]
    if bias is None:
        b = torch.zeros(w.shape[0], dtype=torch.float64)
    elif isinstance(module, nn.Linear):
        b = bias.expand(*out_shape).reshape(-1)
    else:
        b = bias.reshape(-1, *([1] * (len(out_shape) - 1))).expand(*out_shape).reshape(-1)
    return w, b


def alphabeta_matrix(w: Tensor, x: Tensor, r: Tensor, beta: float, eps: float = EPS) -> Tensor:
    """The paper's beta rule with its zero-side cases, for ``z_ji = x_i w_ji``."""
    alpha = 1 + beta
    z = x[None, :] * w
    zp, zn = z.clamp(min=0), z.clamp(max=0)
    p, n = zp.sum(1), zn.sum(1)
    a = torch.full_like(p, alpha)
    b = torch.full_like(p, beta)
    neg_only = (p == 0) & (n != 0)
    pos_only = n == 0
    a[pos_only], b[pos_only] = 1.0, 0.0
    a[neg_only], b[neg_only] = 0.0, (-1.0 if beta > 0 else 0.0)
    out = torch.zeros_like(x)
    for j in range(w.shape[0]):  # explicit sum over outputs j
        out += a[j] * zp[j] / (p[j] + eps) * r[j] - b[j] * zn[j] / (n[j] - eps) * r[j]
    return out


def _stab(z: Tensor, eps: float) -> Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z)


def epsilon_matrix(w: Tensor, b: Tensor, x: Tensor, r: Tensor, eps: float) -> Tensor:
    z = x[None, :] * w
    return (z / _stab(z.sum(1) + b, eps)[:, None] * r[:, None]).sum(0)


def zbox_matrix(w: Tensor, x: Tensor, r: Tensor, low: float, high: float,
                eps: float = EPS) -> Tensor:
    lo, hi = torch.full_like(x, low), torch.full_like(x, high)
    z = x[None, :] * w - lo[None, :] * w.clamp(min=0) - hi[None, :] * w.clamp(max=0)
    return (z / _stab(z.sum(1), eps)[:, None] * r[:, None]).sum(0)


def gamma_matrix(w: Tensor, b: Tensor, x: Tensor, r: Tensor, gamma: float,
                 eps: float = EPS) -> Tensor:
    xp, xn = x.clamp(min=0)[None, :], x.clamp(max=0)[None, :]
    up, down = w + gamma * w.clamp(min=0), w + gamma * w.clamp(max=0)
    b_up, b_down = b + gamma * b.clamp(min=0), b + gamma * b.clamp(max=0)
    y = (x[None, :] * w).sum(1) + b
    c_up = xp * up + xn * down          # contributions where y_j > 0
    c_down = xp * down + xn * up        # contributions where y_j < 0
    s_up = (y > 0) * r / _stab(c_up.sum(1) + b_up, eps)
    s_down = (y < 0) * r / _stab(c_down.sum(1) + b_down, eps)
    return (c_up * s_up[:, None] + c_down * s_down[:, None]).sum(0)


# -- the paper's network, layer by layer -------------------------------------------

def _beta_dense(x: Tensor, r: Tensor, forward, transpose, beta: float, eps: float,
                sums: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Beta rule for a layer given as ``forward(x, sign)`` / ``transpose(s, sign)``
    closures over the positive (``sign=+1``) or negative (``-1``) weight part.
    ``sums`` are ``(z+, z-)`` when already known."""
    alpha = 1 + beta
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    p, n = sums if sums is not None else beta_sums(x, forward)
    a = torch.full_like(p, alpha)
    b = torch.full_like(p, beta)
    neg_only = (p == 0) & (n != 0)
    pos_only = n == 0
    a[pos_only], b[pos_only] = 1.0, 0.0
    a[neg_only], b[neg_only] = 0.0, (-1.0 if beta > 0 else 0.0)
    sp = a * r / (p + eps)
    sn = b * r / (n - eps)
    out = xp * (transpose(sp, +1) - transpose(sn, -1))
    if (xn != 0).any():  # the x- terms vanish after ReLU; skipping them only saves time
        out = out + xn * (transpose(sp, -1) - transpose(sn, +1))
    return out


def beta_sums(x: Tensor, forward) -> tuple[Tensor, Tensor]:
    """``z+ = sum_i (x_i w_ij)+`` and ``z- = sum_i (x_i w_ij)-`` of a layer."""
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    p, n = forward(xp, +1), forward(xp, -1)
    if (xn != 0).any():
        p, n = p + forward(xn, -1), n + forward(xn, +1)
    return p, n


def _part(w: Tensor, sign: int) -> Tensor:
    return w.clamp(min=0) if sign > 0 else w.clamp(max=0)


class PaperReference:
    """LRP of a ``ConvBlockCNN`` (the paper's network) under the paper's beta rule.

    Activations come from one layer-by-layer forward pass in ``forward_dtype``;
    each relevance pass is float64 throughout. BatchNorm, ReLU and Dropout pass
    relevance, max pooling sends it to the winner, relevance starts at the
    softmax probability of the target class.
    """

    def __init__(self, model: nn.Module, x: Tensor, forward_dtype: torch.dtype = torch.float64):
        self.layers = [*model.features, *model.classifier]
        net = copy.deepcopy(model).to(forward_dtype).eval()
        self.inputs = []
        with torch.no_grad():
            h = x.to(forward_dtype)
            for layer in [*net.features, *net.classifier]:
                self.inputs.append(h)
                h = layer(h)
        self.logits = h.double()
        self.probabilities = torch.softmax(self.logits, dim=1)
        self._sums: dict[int, tuple[Tensor, Tensor]] = {}  # z+/z- per layer, beta-free

    def relevance(self, beta: float, target: int = 1, eps: float = EPS) -> Tensor:
        r = torch.zeros_like(self.logits)
        r[:, target] = self.probabilities[:, target]
        for index in reversed(range(len(self.layers))):
            r = self._layer(index, r, beta, eps)
        return r

    def _layer(self, index: int, r: Tensor, beta: float, eps: float) -> Tensor:
        layer, h = self.layers[index], self.inputs[index].double()
        if isinstance(layer, (nn.Linear, nn.Conv3d)):
            w = layer.weight.detach().double()
            if isinstance(layer, nn.Linear):
                def forward(v, s):
                    return v @ _part(w, s).T

                def transpose(v, s):
                    return v @ _part(w, s)
            else:
                def forward(v, s):
                    return F.conv3d(v, _part(w, s), padding=layer.padding)

                def transpose(v, s):
                    return F.conv_transpose3d(v, _part(w, s), padding=layer.padding)
            if index not in self._sums:
                self._sums[index] = beta_sums(h, forward)
            return _beta_dense(h, r, forward, transpose, beta, eps, self._sums[index])
        if isinstance(layer, nn.MaxPool3d):
            _, idx = F.max_pool3d(h, layer.kernel_size, layer.stride, return_indices=True)
            return F.max_unpool3d(r.reshape(idx.shape), idx, layer.kernel_size, layer.stride,
                                  output_size=h.shape[2:])
        if isinstance(layer, nn.Flatten):
            return r.reshape(h.shape)
        if isinstance(layer, (nn.BatchNorm3d, nn.ReLU, nn.Dropout)):
            return r
        raise TypeError(f"the reference does not cover {type(layer).__name__}")


# -- merges and fixed linear maps ---------------------------------------------------

def map_matrix(fn, in_shape: tuple[int, ...]) -> Tensor:
    """A fixed linear map ``fn`` (e.g. average pooling) as a dense ``(n_out, n_in)``
    float64 matrix, one input basis vector at a time."""
    basis = torch.eye(int(torch.tensor(in_shape).prod()), dtype=torch.float64)
    with torch.no_grad():
        columns = fn(basis.reshape(-1, *in_shape))
    return columns.reshape(columns.shape[0], -1).T.contiguous()


def sum_share(terms: list[Tensor], r: Tensor, eps: float = EPS) -> list[Tensor]:
    """Relevance of each summand of ``y = sum_k x_k``: ``x_k / (y + eps sign(y)) R``."""
    total = torch.zeros_like(terms[0])
    for term in terms:  # explicit sum over summands k
        total = total + term
    return [term / _stab(total, eps) * r for term in terms]


# -- reference (DeepLIFT rescale) and flat rules -------------------------------------

def rescale_matrix(w: Tensor, dx: Tensor, dz: Tensor, r: Tensor, eps: float = EPS) -> Tensor:
    """DeepLIFT's rescale rule on a linear layer: ``R_i = sum_j w_ji dx_i / dz_j R_j``."""
    out = torch.zeros_like(dx)
    for j in range(w.shape[0]):  # explicit sum over outputs j
        out += w[j] * dx / _stab(dz[j], eps) * r[j]
    return out


def flat_matrix(connected: Tensor, r: Tensor, eps: float = EPS) -> Tensor:
    """The flat rule: each output's relevance in equal shares over its connected inputs."""
    out = torch.zeros(connected.shape[1], dtype=torch.float64)
    for j in range(connected.shape[0]):
        out += connected[j] / _stab(connected[j].sum(), eps) * r[j]
    return out
