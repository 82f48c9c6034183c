"""Train one model on one dataset under every requested clipping arm; read top to bottom.

A run is (task, gap, model, clip, seed). All clip arms of one (task, gap, model, seed)
share the dataset and the initial weights, so their comparison is paired.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

import models
import tasks
from gapbench import data
from gapbench.io import atomic_path, provenance, write_csv, write_json
from gapbench.probes import gradient_decay

CLIP_ARMS = ("none", "norm", "value")
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}
RUN_FILES = ("metrics.json", "history.csv", "gradient_decay.csv", "model.pt")


def clip_gradients_(params, arm: str, threshold: float | None) -> tuple[float, bool]:
    """Return the pre-clip gradient norm ||g|| and whether clipping changed g.

    norm:  g ← θ0 g / ||g||  when ||g|| > θ0   (Pascanu et al. 2013, Algorithm 1)
    value: g_i ← clamp(g_i, −θ0, θ0)           (elementwise, Mikolov 2012)
    """
    grads = [p.grad for p in params if p.grad is not None]
    # float64, so that a large but finite gradient has a finite norm and gets clipped
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads])
    ).item()
    if arm == "none" or not math.isfinite(norm):
        return norm, False
    if arm == "norm":
        if norm > threshold:
            for g in grads:
                g.mul_(threshold / norm)
            return norm, True
        return norm, False
    if arm == "value":
        fired = any(bool((g.abs() > threshold).any()) for g in grads)
        for g in grads:
            g.clamp_(-threshold, threshold)
        return norm, fired
    raise ValueError(f"unknown clip arm {arm!r}; allowed: {list(CLIP_ARMS)}")


class Net(nn.Module):
    """A recurrent model of `models` followed by a linear readout at every step."""

    def __init__(self, rnn: nn.Module, output_size: int):
        super().__init__()
        self.rnn = rnn
        self.readout = nn.Linear(rnn.hidden_size, output_size)

    def forward(self, x):
        output, _ = self.rnn(x)
        return self.readout(output)


@torch.no_grad()
def evaluate(net, task, split, batch_size=512) -> tuple[float, float]:
    """Mean loss and score over a whole split, batch by batch (weighted by batch size)."""
    x, y = split
    total_loss = total_score = 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        pred = net(xb)
        total_loss += task.loss(pred, yb).item() * len(xb)
        total_score += task.score(pred, yb).item() * len(xb)
    return total_loss / len(x), total_score / len(x)


def train_arm(spec: dict, clip: str, splits: dict, task, run_dir: Path, log=print) -> dict:
    """Train from the seed's initial weights under one clip arm; write the run folder."""
    seed, cfg = spec["seed"], spec["train"]
    started = time.perf_counter()
    (run_dir / "metrics.json").unlink(missing_ok=True)  # the folder is incomplete until it is rewritten
    torch.manual_seed(seed)
    rnn = models.build(spec["model"], task.input_size, spec["hidden_size"], **spec["model_options"])
    device = splits["train"][0].device
    net = Net(rnn, task.output_size).to(device)  # initialised on the CPU: same weights on any device
    probe_x, probe_y = (t[: cfg["probe_batch"]].cpu() for t in splits["test"])
    decay = [gradient_decay(net.rnn, net.readout, task, probe_x, probe_y).assign(stage="init")]

    params = list(net.parameters())
    optimizer = OPTIMIZERS[cfg["optimizer"]](params, lr=cfg["lr"])
    batches = torch.Generator().manual_seed(seed)
    x_train, y_train = splits["train"]
    history, clipped_steps, steps_done, diverged, last_finite = [], 0, 0, False, None
    for step in range(1, cfg["steps"] + 1):
        index = torch.randint(len(x_train), (cfg["batch_size"],), generator=batches).to(device)
        loss = task.loss(net(x_train[index]), y_train[index])
        if not math.isfinite(loss.item()):
            diverged = True
            log(f"[{clip}] step {step}: non-finite loss; back to the last weights with a finite loss")
            break
        # the weights that just gave a finite loss: where a divergence rolls back to
        last_finite = [p.detach().clone() for p in params]
        steps_done = step - 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm, clipped = clip_gradients_(params, clip, spec["clip_thresholds"].get(clip))
        if not math.isfinite(grad_norm):  # pre-clip float64 norm: finite iff every entry is
            diverged = True
            log(f"[{clip}] step {step}: non-finite gradient; stopping (diverged)")
            break
        optimizer.step()
        if not all(torch.isfinite(p).all() for p in params):
            diverged = True
            log(f"[{clip}] step {step}: the update made weights non-finite; stopping (diverged)")
            break
        steps_done, clipped_steps = step, clipped_steps + clipped
        if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
            val_loss, val_score = evaluate(net, task, splits["validation"])
            history.append(
                {"step": step, "train_loss": loss.item(), "grad_norm": grad_norm,
                 "val_loss": val_loss, "val_score": val_score, "clip_fraction": clipped_steps / step}
            )
            log(f"[{clip}] step {step}/{cfg['steps']} train_loss {loss.item():.4g} "
                f"val_loss {val_loss:.4g} val_{task.metric} {val_score:.4g}")
    if diverged and last_finite is not None:
        with torch.no_grad():
            for p, kept in zip(params, last_finite):
                p.copy_(kept)

    test_loss, test_score = evaluate(net, task, splits["test"])
    diverged = diverged or not math.isfinite(test_loss)  # finite weights, exploding states
    decay.append(gradient_decay(net.rnn, net.readout, task, probe_x, probe_y).assign(stage="trained"))

    keys = {"task": task.registry_name, "model": spec["model"], "clip": clip, "gap": task.gap, "seed": seed}
    metrics = {
        **keys,
        "metric": task.metric,
        "test_loss": test_loss,
        "test_score": test_score,
        "baseline": task.baseline,
        "chance_score": task.chance_score,
        "success": task.success(test_loss),
        "diverged": diverged,
        "clip_fraction": clipped_steps / steps_done if steps_done else 0.0,
        "train_steps": steps_done,
        "wall_seconds": time.perf_counter() - started,
        "clip_threshold": spec["clip_thresholds"].get(clip),
        "threads": torch.get_num_threads(),
        "spec": spec,
        "provenance": provenance(),
    }
    write_csv(run_dir / "history.csv", pd.DataFrame(history).assign(**keys))
    write_csv(run_dir / "gradient_decay.csv", pd.concat(decay).assign(**keys))
    with atomic_path(run_dir / "model.pt") as tmp:
        torch.save({name: value.cpu() for name, value in net.state_dict().items()}, tmp)
    write_json(run_dir / "metrics.json", metrics)  # last: it marks the run complete
    log(f"[{clip}] done: test_loss {test_loss:.4g} (baseline {task.baseline:.4g}) "
        f"test_{task.metric} {test_score:.4g} diverged={diverged} in {metrics['wall_seconds']:.1f} s")
    return metrics


def run(spec: dict, data_dir, run_dirs: dict[str, str], threads: int = 1) -> list[dict]:
    """Train every clip arm in `run_dirs` ({clip: folder}) on the dataset in `data_dir`."""
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    # Vanishing gradients pass through float32 subnormals, which are 3-5x slower on CPUs;
    # flushing them to zero changes nothing above 1e-38. The probes work in float64 with
    # renormalised vectors, so they never meet subnormals.
    torch.set_flush_denormal(True)
    # CPU kernels are deterministic for a fixed thread count, which the spec's config fixes;
    # torch.use_deterministic_algorithms would cost 1.7 s of imports per job for nothing here.
    device = torch.device(spec["train"].get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train.device is 'cuda' but torch sees no CUDA device here; use 'cpu'")
    splits = {split: data.load(data_dir, split) for split in data.SPLITS}  # checked against meta.json
    meta = json.loads((Path(data_dir) / "meta.json").read_text())
    task = tasks.build(meta["task"], meta["gap"], **meta["params"])
    splits = {
        split: (torch.from_numpy(arrays["x"]).float().to(device), torch.from_numpy(arrays["y"]).to(device))
        for split, arrays in splits.items()
    }
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    log(f"training {spec['model']} on {task.registry_name} gap={task.gap} seed={spec['seed']} "
        f"arms={list(run_dirs)}")
    return [train_arm(spec, clip, splits, task, Path(folder), log) for clip, folder in run_dirs.items()]
