"""A job's training step on the device with no read on the host, captured once as a CUDA graph.

On a GPU the recurrent models are launch-bound: a training step is thousands of small kernels
(a few per time step, forward and back), and the host loop of gapbench.train.train_runs also
reads every run's loss, gradient norm and finiteness at every step, each read a
synchronisation. Here the step of all of a job's runs is one function of device tensors
(`DeviceStep`): the flags that decide a run's fate (non-finite loss, gradient or update;
clipped; frozen) stay on the device, and the host reads them, with the step log, every
`eval_every` steps. Such a step can be captured as a CUDA graph (torch.cuda.graph) and replayed:
one launch a step instead of thousands.

The arithmetic is the host loop's, with per-run masks where it branches:

    kept    = active ∧ finite(loss)                       (the weights are noted for a rollback)
    accept  = kept ∧ finite(||g||) ∧ finite(θ after the update)
    θ, optimiser state ← the update where accept, else unchanged; where active ∧ ¬accept the run
    diverged: θ ← the last weights that gave a finite loss, and the run is frozen.

A frozen run (diverged, or stopped early by the host) is still computed, since a graph has
fixed shapes, but nothing of it changes. Results equal the host loop's to rounding: Adam's
bias corrections are device tensors (gapbench.optim, torch.optim's capturable form) and a GPU
divides by a tensor where the host loop divides by a number. tests/test_graphed.py checks
both on the CPU (the step uncaptured) and, where there is a GPU, the captured step against it.
"""
from __future__ import annotations

from typing import Callable

import torch

from gapbench.models import Net
from gapbench.optim import OPTIMIZERS
from gapbench.spec import TrainConfig
from gapbench.train import RunSetup, SolvedStreak, Training, batches, clip_on_device_, train_runs, validate

# what the step did to each run, recorded per step (the fourth column of DeviceStep.record)
APPLIED, FROZEN, NONFINITE_LOSS, NONFINITE_GRADIENT, NONFINITE_WEIGHTS = range(5)
DIVERGED_BECAUSE = {
    NONFINITE_LOSS: "non-finite loss; back to the last weights with a finite loss",
    NONFINITE_GRADIENT: "non-finite gradient; stopping (diverged)",
    NONFINITE_WEIGHTS: "the update made weights non-finite; stopping (diverged)",
}
WARM_UP_STEPS = 3  # eager steps before the capture (cuDNN and the allocator settle in them)


class DeviceStep:
    """One optimiser step of every run of a batched training, on the device, no host read.

    Reads each run's batch from its static input tensors (`inputs`: one (x, y) per run, filled
    by the caller before each call) and writes `record` (runs × [loss, pre-clip norm, clipped,
    status]); `active` says which runs still train (the host clears an entry to stop a run)."""

    def __init__(self, runs: list[RunSetup], optimizers, task, inputs: list[tuple[torch.Tensor, torch.Tensor]]):
        self.nets = [run.net for run in runs]
        self.params = [list(run.net.parameters()) for run in runs]
        self.clips = [(run.clip, run.threshold) for run in runs]
        self.optimizers, self.task, self.inputs = optimizers, task, inputs
        device = inputs[0][0].device
        self.active = torch.ones(len(runs), dtype=torch.bool, device=device)
        self.counts = torch.zeros(len(runs), dtype=torch.float64, device=device)  # updates applied (Adam's t)
        # the last weights that gave a finite loss: where a divergence rolls back to
        self.last_finite = [[p.detach().clone() for p in params] for params in self.params]
        self.record = torch.zeros(len(runs), 4, dtype=torch.float64, device=device)

    def __call__(self) -> None:
        for params in self.params:
            for p in params:
                p.grad = None  # so that a capture allocates the gradients in the graph's memory
        predictions = Net.forward_runs(self.nets, [x for x, _ in self.inputs])
        losses = torch.stack([self.task.loss(prediction, y) for prediction, (_, y) in zip(predictions, self.inputs)])
        losses.sum().backward()  # each run's parameters get exactly the gradient of its own loss
        with torch.no_grad():
            loss_finite = torch.isfinite(losses)
            for index, (params, optimizer, (arm, threshold)) in enumerate(zip(self.params, self.optimizers, self.clips)):
                active = self.active[index]
                kept = active & loss_finite[index]
                for p, last in zip(params, self.last_finite[index]):
                    last.copy_(torch.where(kept, p, last))
                norm, clipped = clip_on_device_(params, arm, threshold)
                before = [t.clone() for t in optimizer.state_tensors()]
                count = self.counts[index] + 1
                optimizer.step_on_device(count)
                weights_finite = torch.stack([torch.isfinite(p).all() for p in params]).all()
                norm_finite = torch.isfinite(norm)
                accept = kept & norm_finite & weights_finite
                for now, then in zip(optimizer.state_tensors(), before):
                    now.copy_(torch.where(accept, now, then))
                diverged = active & ~accept
                for p, last in zip(params, self.last_finite[index]):
                    p.copy_(torch.where(diverged, last, p))
                self.counts[index] = torch.where(accept, count, self.counts[index])
                status = torch.zeros_like(norm)  # APPLIED, unless the first failure below, in this order
                for failed, code in reversed([(~active, FROZEN), (~loss_finite[index], NONFINITE_LOSS),
                                              (~norm_finite, NONFINITE_GRADIENT), (~weights_finite, NONFINITE_WEIGHTS)]):
                    status = torch.where(failed, code, status)
                self.record[index] = torch.stack([losses[index].double(), norm, clipped.double(), status])
                self.active[index] = active & accept


def _capture(step: DeviceStep, device) -> torch.cuda.CUDAGraph:
    """Record `step` as a CUDA graph (it runs nothing: replay it). Its memory comes from the
    graph's own pool, so every replay reads and writes the same addresses. The outer stream
    context puts the caller's stream back even where a failed capture leaves torch.cuda.graph's
    own capture stream current."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(torch.cuda.current_stream(device)):
        with torch.cuda.graph(graph):
            step()
    return graph


def train_job(runs: list[RunSetup], task, cfg: TrainConfig, device, log: Callable[[str], None] = print,
              finished: Callable[[int, Training], None] | None = None) -> list[Training]:
    """How a job trains its runs: `train_on_device`, captured, where cfg.cuda_graph asks for it;
    else gapbench.train.train_runs."""
    if cfg.cuda_graph:
        return train_on_device(runs, task, cfg, device, log, finished or (lambda index, training: None))
    return train_runs(runs, task, cfg, device, log, finished)


def train_on_device(runs: list[RunSetup], task, cfg: TrainConfig, device, log: Callable[[str], None],
                    finished: Callable[[int, Training], None], capture: bool = True) -> list[Training]:
    """gapbench.train.train_runs with its step as `DeviceStep` (captured as a CUDA graph after
    WARM_UP_STEPS eager steps when `capture` and every model is `graph_capturable`; uncaptured,
    on any device, otherwise): the same runs, step logs, evaluations and stops, read from the
    device every cfg.eval_every steps. A divergence between two reads is handled (logged, the
    run reported to `finished`) at the next read, up to eval_every − 1 steps after it happened,
    before that read's evaluations; the host loop reports it at once. Models fitted by random
    guessing compute no gradient: train_runs fits them."""
    if not runs or runs[0].net.rnn.trained_by == "guessing":
        return train_runs(runs, task, cfg, device, log, finished)
    device = torch.device(device)
    trainings = [Training() for _ in runs]
    streaks = [SolvedStreak(cfg.stop_when_solved, cfg.steps) for _ in runs]
    optimizers = [OPTIMIZERS[cfg.optimizer](list(run.net.parameters()), lr=cfg.lr) for run in runs]
    keys = [str(run.data_dir) for run in runs]
    # batches are read on the CPU and copied into each run's static input tensors; on a GPU from
    # pinned memory without blocking, so the host does not wait for the step before (a copy from
    # pageable memory would synchronise)
    streams = {key: batches(run.data_dir, "train", cfg.batch_size, "cpu", repeat=True)
               for key, run in zip(keys, runs)}
    batch = {key: next(stream) for key, stream in streams.items()}
    inputs = [(batch[key][0].to(device, copy=True), batch[key][1].to(device, copy=True)) for key in keys]  # one per run
    pinned = device.type == "cuda"
    step = DeviceStep(runs, optimizers, task, inputs)
    window = torch.empty(cfg.eval_every, len(runs), 4, dtype=torch.float64, device=device)
    capture = capture and device.type == "cuda"
    if capture and not all(run.net.rnn.graph_capturable for run in runs):
        log(f"[graph] {type(runs[0].net.rnn).__name__} reads values on the host in its step "
            "(graph_capturable = False): training on the device without a CUDA graph")
        capture = False
    if capture:
        side = torch.cuda.Stream(device)  # eager warm-up off the default stream, as torch.cuda.graph asks
    graph = None
    training_runs = set(range(len(runs)))  # not yet stopped, as far as the host knows
    first = 1  # the first step in `window`

    def stop(index: int, message: str | None = None) -> None:
        if message:
            log(f"[{runs[index].name}] {message}")
        training_runs.discard(index)
        step.active[index] = False  # frozen on the device from the next step on (a diverged run is already)
        finished(index, trainings[index])

    for number in range(1, cfg.steps + 1):
        if not training_runs:
            break
        if number > 1:
            batch = {key: next(stream) for key, stream in streams.items()}
        for (x, y), key in zip(inputs, keys):
            x.copy_(batch[key][0].pin_memory() if pinned else batch[key][0], non_blocking=pinned)
            y.copy_(batch[key][1].pin_memory() if pinned else batch[key][1], non_blocking=pinned)
        if graph is not None:
            graph.replay()
        elif capture and number > WARM_UP_STEPS:
            try:
                graph = _capture(step, device)
            except RuntimeError as error:  # an operation a graph cannot hold: train on, uncaptured
                cause = error.__context__ or error  # the operation that broke the capture, not capture_end's
                log(f"[graph] the step could not be captured as a CUDA graph ({str(cause).splitlines()[0]}); "
                    "training on without one")
                capture = False
                torch.cuda.synchronize(device)
                step()
            else:
                graph.replay()
        elif capture:
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                step()
            torch.cuda.current_stream(device).wait_stream(side)
        else:
            step()
        window[number - first].copy_(step.record)
        if number % cfg.eval_every and number != cfg.steps:
            continue
        rows = window[: number - first + 1].cpu().tolist()  # the one read of these steps
        first = number + 1
        for offset, row in enumerate(rows):
            at = number - len(rows) + 1 + offset
            for index in sorted(training_runs):
                loss, norm, clipped, status = row[index]
                status, training = int(status), trainings[index]
                if status == FROZEN:
                    continue
                if status != NONFINITE_LOSS:
                    training.steps.append({"step": at, "train_loss": loss, "grad_norm": norm, "clipped": bool(clipped)})
                if status == APPLIED:
                    training.applied_steps = at
                    continue
                if status != NONFINITE_LOSS:
                    training.applied_steps = at - 1
                training.diverged = True
                training.steps_to_solve = None  # the weights kept are from before the end: not "solved to the end"
                stop(index, f"step {at}: {DIVERGED_BECAUSE[status]}")
        for index in sorted(training_runs):  # each run that applied this step's update is evaluated
            message = validate(runs[index], trainings[index], streaks[index], number, task, cfg, device, log)
            if message:
                stop(index, message)
    for index in sorted(training_runs):
        stop(index)
    return trainings
