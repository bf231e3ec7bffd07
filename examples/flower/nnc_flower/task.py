"""The learning task: scikit-learn's 8x8 digits, a NumPy MLP 64-128-10 and Adam.

The same setup as the Rust FL example (crates/nnc-fl/examples) and the reference baseline
(shared/fl/ref_fl_digits.py): pixels / 16, stratified 80/20 train/test split (random_state 42),
a non-IID Dirichlet(0.5) label split of the training set over the clients (seed 2023, resampled
until every client has >= 20 samples), one local epoch per round, batch 16, Adam lr 3e-3 created
fresh every round, per-round seeds from the client id and the round.

The data ships inside the scikit-learn package (load_digits reads a file of the wheel); nothing is
downloaded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

HIDDEN = 128
PARAM_SHAPES = OrderedDict(
    [
        ("fc1.weight", (HIDDEN, 64)),
        ("fc1.bias", (HIDDEN,)),
        ("fc2.weight", (10, HIDDEN)),
        ("fc2.bias", (10,)),
    ]
)
NUM_PARAMS = sum(int(np.prod(s)) for s in PARAM_SHAPES.values())
Model = "OrderedDict[str, np.ndarray]"


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray


@lru_cache(maxsize=None)
def load_data(num_clients: int, alpha: float = 0.5, seed: int = 2023, min_size: int = 20):
    """Returns (test split, [client splits]) for `num_clients` clients."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=y, random_state=42)
    y_train = y[train_idx]
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in range(10):
            of_class = np.where(y_train == c)[0]
            rng.shuffle(of_class)
            p = rng.dirichlet(alpha * np.ones(num_clients))
            cuts = (np.cumsum(p) * len(of_class)).astype(int)[:-1]
            for k, s in enumerate(np.split(of_class, cuts)):
                parts[k] += s.tolist()
        if min(len(p) for p in parts) >= min_size:
            break
    else:
        raise RuntimeError(f"no Dirichlet split gives {num_clients} clients >= {min_size} samples")
    clients = []
    for p in parts:
        sel = np.sort(train_idx[np.array(p, dtype=np.int64)])
        clients.append(Split(x[sel], y[sel]))
    test = np.sort(test_idx)
    return Split(x[test], y[test]), clients


def init_model(seed: int) -> Model:
    """PyTorch's default Linear initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    model = OrderedDict()
    for name, shape in PARAM_SHAPES.items():
        fan_in = 64 if name.startswith("fc1") else HIDDEN
        bound = 1.0 / np.sqrt(fan_in)
        model[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return model


def forward(model: Model, x: np.ndarray):
    h_pre = x @ model["fc1.weight"].T + model["fc1.bias"]
    h = np.maximum(h_pre, 0.0)
    logits = h @ model["fc2.weight"].T + model["fc2.bias"]
    return h_pre, h, logits


def _softmax_xent(logits: np.ndarray, y: np.ndarray):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
    return loss, p


def train(model: Model, data: Split, *, epochs: int, batch_size: int, lr: float, seed: int):
    """Trains a copy of `model` with a fresh Adam; returns (new model, mean loss)."""
    params = OrderedDict((k, v.astype(np.float32).copy()) for k, v in model.items())
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    rng = np.random.default_rng(seed)
    step, losses = 0, []
    for _ in range(epochs):
        order = rng.permutation(len(data.y))
        for start in range(0, len(order), batch_size):
            sel = order[start : start + batch_size]
            x, y = data.x[sel], data.y[sel]
            h_pre, h, logits = forward(params, x)
            loss, p = _softmax_xent(logits, y)
            losses.append(loss)
            g = p
            g[np.arange(len(y)), y] -= 1.0
            g /= len(y)
            grads = {
                "fc2.weight": g.T @ h,
                "fc2.bias": g.sum(axis=0),
            }
            gh = (g @ params["fc2.weight"]) * (h_pre > 0)
            grads["fc1.weight"] = gh.T @ x
            grads["fc1.bias"] = gh.sum(axis=0)
            step += 1
            for k in params:
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v2[k] = b2 * v2[k] + (1 - b2) * grads[k] ** 2
                m_hat = m[k] / (1 - b1**step)
                v_hat = v2[k] / (1 - b2**step)
                params[k] = (params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
    return params, float(np.mean(losses)) if losses else 0.0


def evaluate(model: Model, data: Split):
    """Returns (loss, accuracy) on `data`."""
    _, _, logits = forward(model, data.x)
    loss, p = _softmax_xent(logits, data.y)
    return float(loss), float((p.argmax(axis=1) == data.y).mean())


def num_batches(data: Split, batch_size: int) -> int:
    """What the reference's NNClient reports as its aggregation weight (len(trainloader))."""
    return (len(data.y) + batch_size - 1) // batch_size
