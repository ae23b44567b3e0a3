"""Verify the dropout SME of your own PyTorch network (the tutorial "Your own network").

Two networks on the first digits of scikit-learn's bundled load_digits (no download):

* a Sequential MLP with dropout only before its last layer and the squared loss: the exact case
  (closed-form L_S = R_S + R_1 and Σ = F Fᵀ, SMEs of orders 1 and 2, any solver);
* a custom module with dropout in the middle and cross-entropy: the sampled case (drift from
  dropout gradients, mask-pair noise, Euler–Maruyama; order 1).

Keep probability: nn.Dropout(q) keeps a unit with probability p = 1 − q.

    python examples/own_network.py [--fast]
"""

import argparse

import torch
from torch import nn

import smetool
from smetool.models.data import digits_data


class SmallCNN(nn.Module):
    """Conv → tanh → channel dropout → pool → linear: dropout not before the last layer."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.drop = nn.Dropout2d(0.2)  # keep probability p = 0.8
        self.head = nn.Linear(channels * 16, 10)

    def forward(self, x):
        h = self.drop(torch.tanh(self.conv(x)))
        return self.head(nn.functional.avg_pool2d(h, 2).flatten(1))


def main(fast: bool) -> None:
    torch.manual_seed(0)  # the user's own initialisation; smetool itself never uses global RNG
    n_paths = 300 if fast else 4000
    lrs = (0.04, 0.02) if fast else (0.04, 0.02, 0.01, 0.005)

    # 1. Exact case: dropout on the input of the final linear layer, squared loss.
    data = digits_data(32)
    mlp = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 10)).double()
    with torch.no_grad():
        mlp[3].weight.mul_(0.1)  # a small output layer: strong drift, modest dropout noise
    exact = smetool.dropout_net(mlp, data.X, data.y, loss="mse")
    print(exact, "exact:", exact.exact, "SME orders:", exact.sme_orders)
    result = smetool.verify(exact, lrs, n_paths, horizon=0.2, steps_per_lr=4, seed=0)
    print(result.table())

    # 2. Sampled case: channel dropout inside a CNN, cross-entropy.
    images = digits_data(32, image=True, one_hot=False)
    cnn = SmallCNN().double()
    sampled = smetool.dropout_net(cnn, images.X, images.y, loss="cross_entropy", drift_masks=1)
    print(sampled, "exact:", sampled.exact, "SME orders:", sampled.sme_orders)
    # Euler-Maruyama with a sampled drift is weak order 1 in h: take h = lr/8 outside --fast.
    result = smetool.verify(sampled, lrs, n_paths // 3, horizon=0.2, steps_per_lr=2 if fast else 8,
                            seed=0, method="euler")
    print(result.table())

    # 3. What the analyses use: losses, per-sample gradients, Hessian-vector products.
    model, theta = sampled.model, sampled.initial_state(2)
    grads = model.per_sample_gradients(theta)  # (paths, n, D)
    hv = model.loss_hvp(theta, model.loss_grad(theta))
    print(f"R_S = {model.loss(theta)[0]:.4f}; per-sample gradients {tuple(grads.shape)}; "
          f"|H g| = {hv[0].norm():.3e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few paths and learning rates")
    main(parser.parse_args().fast)
