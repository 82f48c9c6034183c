"""The training loop, read top to bottom: batches in, a trained network and its step log out.

`train` only trains (it writes nothing); gapbench/job.py sets a run up, probes it and writes
its folder. Clipping and its statistics live here, with the code that clips.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from gapbench import data
from gapbench.models import Net
from gapbench.optim import OPTIMIZERS  # not torch.optim, which imports torch._dynamo: see gapbench.optim
from gapbench.spec import TrainConfig

CLIP_ARMS = ("none", "norm", "value")


def clip_on_device_(params, arm: str, threshold: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip the gradients of `params` in place; return the pre-clip gradient norm ||g|| (float64)
    and whether clipping changed g, both as 0-dim tensors on the gradients' device, with no read
    on the host (so a CUDA graph can hold it: gapbench/graphed.py).

    norm:  g ← θ0 g / ||g||  when ||g|| > θ0   (Pascanu et al. 2013, Algorithm 1)
    value: g_i ← clamp(g_i, −θ0, θ0)           (elementwise, Mikolov 2012)

    A non-finite ||g|| clips nothing and counts as not clipped (the run diverged: its update is
    never applied). Where the norm arm does not clip it multiplies by exactly 1.
    """
    if arm not in CLIP_ARMS:
        raise ValueError(f"unknown clip arm {arm!r}; allowed: {list(CLIP_ARMS)}")
    grads = [p.grad for p in params if p.grad is not None]
    # float64, so that a large but finite gradient has a finite norm and gets clipped
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads])
    )
    finite = torch.isfinite(norm)
    if arm == "none":
        return norm, torch.zeros_like(finite)
    if arm == "norm":
        fired = finite & (norm > threshold)
        # θ0/||g|| divided in float64, as Python divides (a number over a tensor would multiply by a reciprocal)
        factor = torch.where(fired, torch.full_like(norm, threshold).div_(norm), torch.ones_like(norm))
        for g in grads:
            g.mul_(factor)  # as g.mul_(θ0/||g||) with a Python float: the factor rounded to g's dtype
        return norm, fired
    fired = finite & torch.stack([(g.abs() > threshold).any() for g in grads]).any()
    for g in grads:
        g.clamp_(-threshold, threshold)
    return norm, fired


def clip_gradients_(params, arm: str, threshold: float | None) -> tuple[float, bool]:
    """`clip_on_device_`, its norm and flag read on the host."""
    norm, fired = clip_on_device_(params, arm, threshold)
    return norm.item(), bool(fired)


def clipping_statistics(pre_clip_norms, clipped, applied_steps: int) -> dict:
    """Gradient-clipping and stability statistics of one run, computed here and nowhere else.

    pre_clip_norms: the global gradient norm ||∇L|| of every step that computed a gradient,
    before clipping (Pascanu et al. 2013, "if ||g|| > θ then g ← θ g/||g||"); clipped: whether
    that step was clipped; applied_steps: how many of the first steps had their update applied
    (a diverging last step computed a norm but was not applied).
    Returns steps, clipped_fraction (over the applied steps; 0 without any), nonfinite_norms
    (inf/NaN: a blow-up), and norm_min, norm_q10, norm_median, norm_q90, norm_max over the
    finite norms.
    """
    norms = np.asarray(pre_clip_norms, dtype=np.float64).ravel()
    flags = np.asarray(clipped, dtype=bool).ravel()
    if flags.size != norms.size:
        raise ValueError(f"{norms.size} norms but {flags.size} clipped flags")
    finite = norms[np.isfinite(norms)]
    quantiles = np.quantile(finite, [0.0, 0.1, 0.5, 0.9, 1.0]) if finite.size else [math.nan] * 5
    return {
        "steps": int(norms.size),
        "clipped_fraction": int(flags[:applied_steps].sum()) / applied_steps if applied_steps else 0.0,
        "nonfinite_norms": int(norms.size - finite.size),
        **{name: float(v) for name, v in
           zip(("norm_min", "norm_q10", "norm_median", "norm_q90", "norm_max"), quantiles)},
    }


def batches(data_dir, split: str, batch_size: int, device, repeat: bool = False):
    """(x, y) tensors read from the split file in order, batch by batch, never the whole split.

    The sequences are i.i.d. draws, so the file order is as good as a shuffle. With `repeat`
    the split is read again from the start (an epoch: the same batches in the same order),
    and a partial last batch is skipped so that every optimiser step sees `batch_size`
    sequences (unless the whole split is smaller than one batch). Checksums are checked once
    per job (`data.verify`), not here.
    """
    size = data.read_meta(data_dir)["sizes"][split]
    skip_partial = repeat and size >= batch_size
    while True:
        for arrays in data.iter_batches(data_dir, split, batch_size, verify=False):
            if skip_partial and len(arrays["x"]) < batch_size:
                continue
            yield torch.from_numpy(arrays["x"]).float().to(device), torch.from_numpy(arrays["y"]).to(device)
        if not repeat:
            return


EVAL_BATCH = 512  # sequences per forward pass when a whole split is scored, at most
EVAL_SEQUENCE_STEPS = 512 * 256  # on the CPU, sequences × time steps per forward pass, at most


def evaluation_batch(seq_len: int, device) -> int:
    """Sequences per forward pass when a whole split is scored: EVAL_BATCH, and on the CPU no
    more than EVAL_SEQUENCE_STEPS // seq_len (at least one), so that a job's memory stops
    growing with the sequence length. A forward pass keeps every time step's state and input
    projection of its whole batch: a GRU's over 512 sequences of T = 2295 (H = 128) took a job
    from 0.9 to 4.2 GB (docs/performance.md), far above what its training needs. Every grid with
    T <= 256 (the default grid's longest is 91) keeps 512 and its results to the bit. A pass's
    cost per sequence depends on its batch (on a 2-core VM at T = 1000 a pass of 131 sequences
    took 1.3 to 1.6 times one of 64 per sequence, glibc mapping its large blocks afresh:
    docs/clusters.md), so `gapbench cost` times it at this batch. A GPU keeps 512 (its pass
    costs about the same at any batch, and its memory is not the job's)."""
    if torch.device(device).type != "cpu":
        return EVAL_BATCH
    return max(1, min(EVAL_BATCH, EVAL_SEQUENCE_STEPS // seq_len))


@torch.no_grad()
def evaluate(net, task, data_dir, split, device, batch_size: int | None = None) -> tuple[float, float]:
    """Mean loss and score over a whole split, batch by batch (weighted by batch size), at
    `evaluation_batch(task.seq_len, device)` sequences a batch unless `batch_size` is given."""
    batch_size = batch_size or evaluation_batch(task.seq_len, device)
    total_loss = total_score = 0.0
    count = 0
    for xb, yb in batches(data_dir, split, batch_size, device):
        pred = net(xb)
        total_loss += task.loss(pred, yb).item() * len(xb)
        total_score += task.score(pred, yb).item() * len(xb)
        count += len(xb)
    return total_loss / count, total_score / count


@dataclass
class Training:
    """What one clip arm's training produced: its per-step and per-evaluation logs."""

    steps: list[dict] = field(default_factory=list)  # step, train_loss, grad_norm (pre-clip), clipped
    history: list[dict] = field(default_factory=list)  # every eval_every steps: validation loss and score
    applied_steps: int = 0  # updates applied; the network holds the weights after the last of them
    diverged: bool = False
    # the first evaluation from which the validation split met the success criterion at every
    # evaluation up to the end of training (None: not solved at the end); see `train`
    steps_to_solve: int | None = None
    stopped_early: bool = False  # stopped by cfg.stop_when_solved before cfg.steps


@dataclass
class SolvedStreak:
    """The early-stopping rule, written once (`train` runs it; gapbench.reports.stopping replays it on
    recorded histories): stop once the validation split has met the task's success criterion
    at `patience` evaluations in a row (0: never stop), unless the run is at its last step.

    `since` is the first step of the current streak of solved evaluations: at the end of
    training it is `steps_to_solve` (the step from which the run stayed solved), with or
    without stopping."""

    patience: int
    last_step: int
    streak: int = 0
    since: int | None = None

    def record(self, step: int, solved: bool) -> bool:
        """Record the evaluation at `step`; True when training should stop there."""
        self.streak = self.streak + 1 if solved else 0
        self.since = (self.since or step) if solved else None
        return self.patience > 0 and self.streak >= self.patience and step < self.last_step


def guess(net, task, data_dir, device, log: Callable[[str], None] = print) -> Training:
    """Random weight guessing (models/random_guess.py): draw every weight of `net` from
    U(−r, r) K times (torch's CPU generator on any device, so the seed fixes the draws) and keep
    the draw with the lowest validation loss. No gradient is computed, so no clip arm acts."""
    params = list(net.parameters())
    run, best, best_loss = Training(), None, math.inf
    for k in range(1, net.rnn.guesses + 1):
        with torch.no_grad():
            for p in params:  # drawn on the CPU: a GPU's own generator is not the one the seed set for the run
                p.copy_(torch.empty(p.shape).uniform_(-net.rnn.weight_range, net.rnn.weight_range))
        val_loss, val_score = evaluate(net, task, data_dir, "validation", device)
        run.history.append({"step": k, "train_loss": math.nan, "grad_norm": math.nan,
                            "val_loss": val_loss, "val_score": val_score, "clip_fraction": 0.0})
        if val_loss < best_loss:  # a NaN loss is never kept
            best, best_loss = [p.detach().clone() for p in params], val_loss
    if best is not None:
        with torch.no_grad():
            for p, kept in zip(params, best):
                p.copy_(kept)
    log(f"guessed {net.rnn.guesses} weight sets; best val_loss {best_loss:.4g}")
    return run


@dataclass
class RunSetup:
    """One run of a batched training: its network (trained in place), clip arm, threshold θ0
    and dataset folder; `name` prefixes its log lines."""

    net: torch.nn.Module
    clip: str
    threshold: float | None
    data_dir: object
    name: str = ""
    # torch's global generator state to draw from, for a model fitted by random guessing: the
    # state right after its network was built, as when it trained alone (None: as it is)
    generator_state: torch.Tensor | None = None


def shares_computation(nets: list[Net], device) -> bool:
    """Whether a step computes these runs as one (their model's batched forward, one backward of
    the summed losses) rather than run by run. Only off the CPU: on a GPU each time step is a few
    kernel launches whatever their size, so E runs cost about one; on the CPU a batched product is
    the same arithmetic as E products, and E runs' buffers at once fall out of the caches (at
    H = 128, T = 200, 15 runs it measured 0.67-0.72x as fast as run by run, docs/performance.md),
    while run by run every run is exactly the run it would be alone."""
    return torch.device(device).type != "cpu" and Net.batches_runs(nets)


def train(net, task, data_dir, clip: str, threshold: float | None, cfg: TrainConfig, device,
          log: Callable[[str], None] = print) -> Training:
    """Train `net` in place under one clip arm: `train_runs` with a single run."""
    return train_runs([RunSetup(net, clip, threshold, data_dir, clip)], task, cfg, device, log)[0]


def train_runs(runs: list[RunSetup], task, cfg: TrainConfig, device, log: Callable[[str], None] = print,
               finished: Callable[[int, Training], None] | None = None) -> list[Training]:
    """Train every run of `runs` (one job's seeds × clip arms) together, each in place, for
    cfg.steps optimiser steps; return their logs, in the order of `runs`.

    One step: every active run's loss on its own batch (runs on the same dataset read the same
    batch, as each would alone); on a GPU, where the model computes its runs as one
    (`shares_computation`), the sum of the per-run losses backpropagated once (the gradient of a
    sum gives each run exactly the gradient of its own loss), else run by run; then per run its
    own clipping and pre-clip norm, its own optimiser step and its own checks. So each run is
    the run it would be alone, to the bit on the CPU: nothing of one run enters another's
    arithmetic.

    Per run, as for one run alone: every cfg.eval_every steps the validation split is scored;
    a run whose validation loss and score meet the task's success criterion (`task.success`) at
    cfg.stop_when_solved evaluations in a row stops there (0: never). `steps_to_solve` is the
    first step of the streak of successful evaluations that lasts to the end of training, so
    with and without stopping it is the step from which the run stayed solved. A non-finite
    loss, gradient or update stops the run as diverged and puts back the last weights that
    gave a finite loss, so the probes and the test measure a finite network. A stopped run is
    frozen (its weights and optimiser state no longer change) while the others go on, and
    `finished(index, training)` is called as soon as it stops (and for every other run at the
    end), so a caller can write it before the batch ends. Models with trained_by = "guessing"
    are fitted by `guess`, one after another. gapbench.graphed.train_on_device is the same
    training with its step on the device, captured as a CUDA graph (train.cuda_graph).
    """
    trainings = [Training() for _ in runs]
    done = finished or (lambda index, training: None)
    if runs and runs[0].net.rnn.trained_by == "guessing":
        # a search draws the same weights from the same generator state on the same data whatever
        # the clip arm (no gradient is clipped), so a seed's arms share one search
        searched: dict[tuple, tuple[int, torch.Tensor]] = {}  # the first run, the generator after its search
        for index, run in enumerate(runs):
            key = None if run.generator_state is None else (
                repr(run.net), str(run.data_dir), run.generator_state.numpy().tobytes())
            if key in searched:
                first, after = searched[key]
                run.net.load_state_dict(runs[first].net.state_dict())
                torch.set_rng_state(after)  # as if searched: what follows draws what it would have
                trainings[index] = copy.deepcopy(trainings[first])
                log(f"[{run.name}] the search of [{runs[first].name}] (the same draws on the same data): its "
                    "weights, not searched again")
            else:
                if run.generator_state is not None:
                    torch.set_rng_state(run.generator_state)
                trainings[index] = guess(run.net, task, run.data_dir, device, log)
                if key is not None:
                    searched[key] = index, torch.get_rng_state()
            done(index, trainings[index])
        return trainings
    params = [list(run.net.parameters()) for run in runs]
    optimizers = [OPTIMIZERS[cfg.optimizer](run_params, lr=cfg.lr) for run_params in params]
    # one stream per dataset: the runs on it are all at the same step while they train
    streams = {str(run.data_dir): batches(run.data_dir, "train", cfg.batch_size, device, repeat=True) for run in runs}
    streaks = [SolvedStreak(cfg.stop_when_solved, cfg.steps) for _ in runs]
    last_finite: list[list[torch.Tensor] | None] = [None] * len(runs)
    active = list(range(len(runs)))

    def stop(index: int, message: str | None = None, diverged: bool = False) -> None:
        run, training = runs[index], trainings[index]
        if message:
            log(f"[{run.name}] {message}")
        if diverged:
            training.diverged = True
            training.steps_to_solve = None  # the weights kept are from before the end: not "solved to the end"
            if last_finite[index] is not None:
                with torch.no_grad():
                    for p, kept in zip(params[index], last_finite[index]):
                        p.copy_(kept)
        active.remove(index)
        done(index, training)

    for step in range(1, cfg.steps + 1):
        if not active:
            break
        batch = {}
        for index in active:  # one batch per dataset in use, drawn once
            key = str(runs[index].data_dir)
            if key not in batch:
                batch[key] = next(streams[key])
        def accepted(index: int, loss: torch.Tensor) -> bool:
            """A run's finite loss of this step is kept (its weights noted for a rollback); a
            non-finite one stops the run as diverged."""
            if not math.isfinite(loss.item()):
                stop(index, f"step {step}: non-finite loss; back to the last weights with a finite loss", True)
                return False
            # the weights that just gave a finite loss: where a divergence rolls back to
            last_finite[index] = [p.detach().clone() for p in params[index]]
            trainings[index].applied_steps = step - 1
            optimizers[index].zero_grad(set_to_none=True)
            return True

        losses = {}
        nets = [runs[index].net for index in active]
        inputs = [batch[str(runs[index].data_dir)] for index in active]
        if shares_computation(nets, device):  # one computation for all runs: one backward of the summed losses
            predictions = Net.forward_runs(nets, [x for x, _ in inputs])
            for index, prediction, (_, y_batch) in zip(list(active), predictions, inputs):
                loss = task.loss(prediction, y_batch)
                if accepted(index, loss):
                    losses[index] = loss
            if losses:
                sum(losses.values()).backward()
        else:  # nothing shared: run by run, each graph freed before the next is built (cache-friendly)
            for index, net, (x_batch, y_batch) in zip(list(active), nets, inputs):
                loss = task.loss(net(x_batch), y_batch)
                if accepted(index, loss):
                    loss.backward()
                    losses[index] = loss
        for index, loss in losses.items():
            run, training = runs[index], trainings[index]
            grad_norm, clipped = clip_gradients_(params[index], run.clip, run.threshold)
            training.steps.append({"step": step, "train_loss": loss.item(), "grad_norm": grad_norm, "clipped": clipped})
            if not math.isfinite(grad_norm):  # pre-clip float64 norm: finite iff every entry is
                stop(index, f"step {step}: non-finite gradient; stopping (diverged)", True)
                continue
            optimizers[index].step()
            if not all(torch.isfinite(p).all() for p in params[index]):
                stop(index, f"step {step}: the update made weights non-finite; stopping (diverged)", True)
                continue
            training.applied_steps = step
            if step % cfg.eval_every == 0 or step == cfg.steps:
                message = validate(run, training, streaks[index], step, task, cfg, device, log)
                if message:
                    stop(index, message)
    for index in list(active):
        stop(index)
    return trainings


def validate(run: RunSetup, training: Training, streak: SolvedStreak, step: int, task, cfg: TrainConfig, device,
             log: Callable[[str], None]) -> str | None:
    """The evaluation of a run after its update of `step`: score the validation split, add the
    history row (with the step's training loss and pre-clip norm, its last `steps` row) and the
    log line, record it in the early-stopping streak. Returns why the run stops early, or None."""
    last = training.steps[-1]
    val_loss, val_score = evaluate(run.net, task, run.data_dir, "validation", device)
    clipped_so_far = sum(row["clipped"] for row in training.steps) / step
    training.history.append({"step": step, "train_loss": last["train_loss"], "grad_norm": last["grad_norm"],
                             "val_loss": val_loss, "val_score": val_score, "clip_fraction": clipped_so_far})
    log(f"[{run.name}] step {step}/{cfg.steps} train_loss {last['train_loss']:.4g} "
        f"val_loss {val_loss:.4g} val_{task.metric} {val_score:.4g}")
    solved_stop = streak.record(step, task.success(val_loss, val_score))
    training.steps_to_solve = streak.since
    if not solved_stop:
        return None
    training.stopped_early = True
    return (f"step {step}: validation solved at {streak.streak} evaluations in a row "
            f"(since step {training.steps_to_solve}); stopping early")
