"""Train one model on one dataset under every requested clipping arm; read top to bottom.

A run is (task, gap, model, clip, seed). All clip arms of one (task, gap, model, seed)
share the dataset and the initial weights, so their comparison is paired.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from gapbench import models
from gapbench import tasks
from gapbench import data
from gapbench.io import atomic_path, provenance, write_csv, write_json
from gapbench.probes import clipping_statistics, probe_all
from gapbench.tables import PROBE_TABLES

CLIP_ARMS = ("none", "norm", "value")
STEP_COLUMNS = ["step", "train_loss", "grad_norm", "clipped"]  # grad_norm: pre-clip ||g||
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


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


def batches(data_dir, split: str, batch_size: int, device, repeat: bool = False):
    """(x, y) tensors read from the split file in order, batch by batch, never the whole split.

    The sequences are i.i.d. draws, so the file order is as good as a shuffle. With `repeat`
    the split is read again from the start (an epoch: the same batches in the same order),
    and a partial last batch is skipped so that every optimiser step sees `batch_size`
    sequences (unless the whole split is smaller than one batch).
    """
    size = json.loads((Path(data_dir) / "meta.json").read_text())["sizes"][split]
    skip_partial = repeat and size >= batch_size
    while True:  # checksums are checked once per job, in `run`
        for arrays in data.iter_batches(data_dir, split, batch_size, verify=False):
            if skip_partial and len(arrays["x"]) < batch_size:
                continue
            yield torch.from_numpy(arrays["x"]).float().to(device), torch.from_numpy(arrays["y"]).to(device)
        if not repeat:
            return


@torch.no_grad()
def evaluate(net, task, data_dir, split, device, batch_size=512) -> tuple[float, float]:
    """Mean loss and score over a whole split, batch by batch (weighted by batch size)."""
    total_loss = total_score = 0.0
    count = 0
    for xb, yb in batches(data_dir, split, batch_size, device):
        pred = net(xb)
        total_loss += task.loss(pred, yb).item() * len(xb)
        total_score += task.score(pred, yb).item() * len(xb)
        count += len(xb)
    return total_loss / count, total_score / count


def flushing_subnormals() -> bool:
    """Whether the CPU currently flushes subnormals to zero (torch has no getter for it)."""
    return (torch.tensor([2.2e-308], dtype=torch.float64) / 4).item() == 0.0


@contextlib.contextmanager
def exact_subnormals():
    """Training flushes float32 subnormals to zero for speed; the flag also covers float64,
    so the probes run with it off and measure exactly what they would anywhere else.
    The previous setting is restored on exit."""
    flushing = flushing_subnormals()
    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushing)


def measure(net, task, x, y, stage: str) -> dict:
    """Every probe of gapbench.probes on the probe batch, each table tagged with the stage."""
    with exact_subnormals():
        tables = probe_all(net.rnn, net.readout, task, x, y)
    summary = tables.pop("summary")
    return {**{name: table.assign(stage=stage) for name, table in tables.items()},
            "summary": {"stage": stage, **summary}}


def train_arm(spec: dict, clip: str, data_dir, task, run_dir: Path, device, log=print, cache=None) -> dict:
    """Train from the seed's initial weights under one clip arm; write the run folder.

    `cache` carries the probes of the initial weights from one arm to the next: every arm
    starts from the same weights (checked), so they are measured once per job."""
    seed, cfg = spec["seed"], spec["train"]
    started = time.perf_counter()
    (run_dir / "metrics.json").unlink(missing_ok=True)  # the folder is incomplete until it is rewritten
    torch.manual_seed(seed)
    rnn = models.build(spec["model"], task.input_size, spec["hidden_size"], **spec["model_options"])
    net = Net(rnn, task.output_size).to(device)  # initialised on the CPU: same weights on any device
    probe_x, probe_y = (t.cpu() for t in next(batches(data_dir, "test", cfg["probe_batch"], "cpu")))
    cache = {} if cache is None else cache
    initial = {name: value.detach().cpu().clone() for name, value in net.state_dict().items()}
    if "init" not in cache:
        cache["init"], cache["weights"] = measure(net, task, probe_x, probe_y, "init"), initial
    elif not all(torch.equal(initial[name], cache["weights"][name]) for name in initial):
        raise RuntimeError(f"clip arm {clip!r} does not start from the weights the other arms started from; "
                           "the paired comparison (and the shared initial probes) would be wrong")
    probes = [cache["init"]]

    params = list(net.parameters())
    optimizer = OPTIMIZERS[cfg["optimizer"]](params, lr=cfg["lr"])
    train_batches = batches(data_dir, "train", cfg["batch_size"], device, repeat=True)
    history, steps_log, clipped_steps, steps_done, diverged, last_finite = [], [], 0, 0, False, None
    for step in range(1, cfg["steps"] + 1):
        x_batch, y_batch = next(train_batches)
        loss = task.loss(net(x_batch), y_batch)
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
        steps_log.append({"step": step, "train_loss": loss.item(), "grad_norm": grad_norm, "clipped": clipped})
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
            val_loss, val_score = evaluate(net, task, data_dir, "validation", device)
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

    test_loss, test_score = evaluate(net, task, data_dir, "test", device)
    diverged = diverged or not math.isfinite(test_loss)  # finite weights, exploding states
    probes.append(measure(net, task, probe_x, probe_y, "trained"))
    stability = clipping_statistics([row["grad_norm"] for row in steps_log], [row["clipped"] for row in steps_log])
    # over the steps whose update was applied (a diverging step's non-finite norm is still counted)
    stability["clipped_fraction"] = clipped_steps / steps_done if steps_done else 0.0

    keys = {"task": spec.get("task", task.registry_name), "model": spec["model"], "clip": clip, "gap": task.gap, "seed": seed}
    metrics = {
        **keys,
        "task_name": task.registry_name,
        "task_params": task.params(),
        "metric": task.metric,
        "test_loss": test_loss,
        "test_score": test_score,
        "baseline": task.baseline,
        "chance_score": task.chance_score,
        "success": task.success(test_loss, test_score),
        "diverged": diverged,
        "clip_fraction": clipped_steps / steps_done if steps_done else 0.0,
        "train_steps": steps_done,
        "wall_seconds": time.perf_counter() - started,
        "clip_threshold": spec["clip_thresholds"].get(clip),
        "stability": stability,
        "threads": torch.get_num_threads(),
        "spec": spec,
        "provenance": provenance(),
    }
    write_csv(run_dir / "history.csv", pd.DataFrame(history).assign(**keys))
    write_csv(run_dir / "steps.csv", pd.DataFrame(steps_log, columns=STEP_COLUMNS).assign(**keys))
    for name in PROBE_TABLES:
        write_csv(run_dir / f"{name}.csv", pd.concat([p[name] for p in probes]).assign(**keys))
    summary = pd.DataFrame([p["summary"] for p in probes]).assign(
        **keys, diverged=diverged, **{k: v for k, v in stability.items() if k != "steps"})
    write_csv(run_dir / "propagation_summary.csv", summary)
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
    # flushing them to zero changes nothing above 1e-38. The probes turn it off while they
    # run (`exact_subnormals`), so they measure exactly what they would anywhere else.
    torch.set_flush_denormal(True)
    # CPU kernels are deterministic for a fixed thread count, which the spec's config fixes;
    # torch.use_deterministic_algorithms would cost 1.7 s of imports per job for nothing here.
    device = torch.device(spec["train"].get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train.device is 'cuda' but torch sees no CUDA device here; use 'cpu'")
    for split in data.SPLITS:  # check every split against meta.json once, before any training
        next(data.iter_batches(data_dir, split, 1, verify=True))
    meta = json.loads((Path(data_dir) / "meta.json").read_text())
    task = tasks.build(meta["task"], meta["gap"], **meta["params"])
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    log(f"training {spec['model']} on {spec.get('task', task.registry_name)} ({task.registry_name}) gap={task.gap} seed={spec['seed']} "
        f"arms={list(run_dirs)}")
    cache = {}
    return [train_arm(spec, clip, data_dir, task, Path(folder), device, log, cache) for clip, folder in run_dirs.items()]
