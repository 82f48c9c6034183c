"""How much of the gap a predictor must remember to meet each task's success rule: predictors that see only
the last k inputs (k < gap). Run from the repository root: python docs/measurements/task_shortcuts.py
(5 s on the 2-core Intel VM; its output at the commit named in the .txt next to it). From an audit of the tasks
against their docs (2026-12-07)."""
import numpy as np
from gapbench import tasks

rng = np.random.default_rng
# sine_frequency: the class from the last k inputs (a lag-1 autocorrelation estimate of the frequency)
for G in (100, 1000):
    t = tasks.build("sine_frequency", G)
    d = t.sample(4000, rng(0))
    for k in (3, 50):
        w = d["x"][:, -k:, 0].astype(float)
        c = (w[:, 1:-1] * (w[:, 2:] + w[:, :-2])).sum(1) / (2 * (w[:, 1:-1] ** 2).sum(1))
        acc = ((c < np.cos(2 * np.pi * t.band_edges[1])).astype(int) == d["y"]).mean()
        print(f"sine_frequency G={G} last {k} inputs: accuracy {acc:.3f} (chance 0.5)")
# delay: least squares from the last k inputs to each scored target
for G, k in ((10, 6), (30, 20), (100, 80), (100, 90)):
    t = tasks.build("delay", G)
    train, test = t.sample(6000, rng(1)), t.sample(3000, rng(2))
    def design(d):
        x, y = d["x"][..., 0].astype(float), d["y"].astype(float)
        rows = [x[:, t_ - k + 1:t_ + 1] for t_ in range(t.seq_len - t.outputs, t.seq_len)]
        return np.concatenate(rows), y.T.reshape(-1) if y.ndim == 2 else y.reshape(-1)
    X, Y = design(train); Xt, Yt = design(test)
    w, *_ = np.linalg.lstsq(X, Y, rcond=None)
    print(f"delay G={G} last {k} inputs: test MSE {np.mean((Xt @ w - Yt) ** 2):.4f} (baseline {t.baseline}, success < {0.1 * t.baseline:g})")
# adding (arjovsky): the exact conditional mean given only the last G - m steps
G, m = 100, 9
t = tasks.build("adding", G)
d = t.sample(200_000, rng(3))
x, y = d["x"].astype(float), d["y"].astype(float)
seen = x[:, m:, :]
marked = (seen[..., 1] * seen[..., 0]).sum(1)
count = seen[..., 1].sum(1)
pred = marked + (2 - count) * 0.5  # an unseen marked value: its mean 0.5
mse = np.mean((pred - y) ** 2)
print(f"adding G={G} last {G - m} steps: MSE {mse:.4f} (baseline 1/6, success < {0.1 / 6:.4f})")
# parity: distinct sequences at the default (no distractors)
for G in (10, 100):
    t = tasks.build("parity", G)
    d = t.sample(5000, rng(4))
    print(f"parity G={G}: {len(np.unique(d['x'].reshape(5000, -1), axis=0))} distinct sequences in 5000")
# memory_capacity (K = 10 delays): every shorter delay recalled exactly, nothing of the gap's
import torch  # noqa: E402
from gapbench.tasks._base import SUCCESS_FRACTION  # noqa: E402
t = tasks.build("memory_capacity", 30)
shared = ours = 0
for seed in range(40):
    y = torch.from_numpy(t.sample(2048, rng(100 + seed))["y"])
    pred = torch.zeros(2048, t.seq_len, len(t.lags))
    pred[:, -t.outputs:] = y
    pred[:, -t.outputs:, -1] = 0.0
    loss, score = t.loss(pred, y).item(), t.score(pred, y).item()
    shared += loss < SUCCESS_FRACTION * t.baseline
    ours += t.success(loss, score)
print(f"memory_capacity G=30, all delays but the gap's: the shared rule (loss < 0.1 x 1/3) passes {shared} of 40 "
      f"test sets of 2048 sequences; the task's own (the gap's MSE) {ours}")
