"""The CUDA path, checked and timed on a real GPU: `python benchmarks/gpu.py --out DIR`.

Four parts, each printed as a table and written to DIR:

1. every registered model, one forward and backward on the GPU, against the same float32
   network on the CPU: max relative difference of the loss and of every gradient
   (float32 on two devices agrees to about 1e-5; TF32 is off);
2. whole training jobs (`gapbench.job.run`, train.device = cuda, probes on the CPU) at the
   default size and at paper size (H = 128, T = 100 and 1000): seconds per training step and
   in all, and the same jobs on the CPU (one thread) where they are short enough;
3. the engine (`gapbench.engine.recurrence`) against torch.nn.RNN (cuDNN) on the GPU, one
   forward+backward at H = 128, B = 64 and growing T;
4. many runs at once: R independent tanh RNNs (their own weights and batches) as one batched
   recurrence (torch.baddbmm per step) against R separate recurrences, one after the other:
   runs per second. Small recurrent steps leave a GPU idle (each step is a few kernel
   launches), so batching runs is the lever on a GPU; this measures how far it goes.

Ratios measured side by side in one process are the claims; absolute times are this GPU's.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from gapbench.job import exact_float32


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _median_seconds(function, repeats: int = 5) -> float:
    function()  # warm-up: kernels loaded, handles created
    _sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        _sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def check_models(seq_len: int = 50, hidden: int = 32, batch: int = 16) -> pd.DataFrame:
    """Loss and gradients of every registered model on the GPU against the CPU, same weights."""
    from gapbench import models

    rows = []
    for name in models.names():
        torch.manual_seed(0)
        net = models.Net(models.build(name, 3, hidden), 2)
        x = torch.randn(batch, seq_len, 3)
        if net.rnn.trained_by == "guessing":
            loss_cpu = net(x).square().mean()
            loss_gpu = net.to("cuda")(x.cuda()).square().mean()
            rows.append({"model": name, "loss_rel_diff": abs(loss_gpu.item() - loss_cpu.item()) / abs(loss_cpu.item()),
                         "grad_max_rel_diff": float("nan")})
            continue
        net_gpu = models.Net(models.build(name, 3, hidden), 2)
        net_gpu.load_state_dict(net.state_dict())
        net_gpu.to("cuda")
        loss_cpu = net(x).square().mean()
        loss_cpu.backward()
        loss_gpu = net_gpu(x.cuda()).square().mean()
        loss_gpu.backward()
        worst = 0.0
        for (pname, p_cpu), p_gpu in zip(net.named_parameters(), net_gpu.parameters()):
            if p_cpu.grad is None:
                continue
            diff = (p_gpu.grad.cpu() - p_cpu.grad).norm() / p_cpu.grad.norm().clamp_min(1e-30)
            worst = max(worst, float(diff))
        rows.append({"model": name, "loss_rel_diff": abs(loss_gpu.item() - loss_cpu.item()) / abs(loss_cpu.item()),
                     "grad_max_rel_diff": worst})
    return pd.DataFrame(rows)


def time_jobs(work: Path, cpu_too: bool = True) -> pd.DataFrame:
    """Whole training jobs on the GPU (and the CPU, one thread), seconds per step and in all."""
    from gapbench import data, job, tasks
    from gapbench.spec import RunSpec, TrainConfig

    cases = [  # (label, task, options, gap, model, hidden, steps, sizes)
        ("default size", "copy", {"length": 10, "alphabet": 8}, 40, "vanilla", 64, 300,
         {"train": 8192, "validation": 512, "test": 1024}),
        ("default size", "copy", {"length": 10, "alphabet": 8}, 40, "lstm", 64, 300,
         {"train": 8192, "validation": 512, "test": 1024}),
        ("paper size", "adding", {}, 100, "vanilla", 128, 100, {"train": 16384, "validation": 1024, "test": 2048}),
        ("paper size", "adding", {}, 100, "lstm", 128, 100, {"train": 16384, "validation": 1024, "test": 2048}),
        ("paper size", "adding", {}, 1000, "vanilla", 128, 50, {"train": 16384, "validation": 1024, "test": 2048}),
        ("paper size", "adding", {}, 1000, "lstm", 128, 50, {"train": 16384, "validation": 1024, "test": 2048}),
    ]
    rows = []
    for label, task_name, options, gap, model, hidden, steps, sizes in cases:
        folder = work / f"{task_name}{gap}"
        if not (folder / "meta.json").exists():
            data.generate(tasks.build(task_name, gap, **options), 0, sizes, folder)
        devices = ["cuda", "cpu"] if cpu_too and gap < 1000 else ["cuda"]
        for device in devices:
            spec = RunSpec(task=task_name, task_name=task_name, task_params=options, gap=gap, model=model,
                           model_name=model, model_options={}, hidden_size=hidden, seed=0, threads=1,
                           clip_thresholds={"norm": 1.0},
                           train=TrainConfig(steps=steps, batch_size=64, optimizer="adam", lr=1e-3,
                                             eval_every=steps, probe_batch=32, device=device))
            started = time.perf_counter()
            (metrics,) = job.run(spec, folder, {"norm": work / f"run_{model}_{gap}_{device}"}, log=lambda _: None)
            total = time.perf_counter() - started
            rows.append({"size": label, "task": task_name, "gap": gap, "seq_len": tasks.build(task_name, gap, **options).seq_len,
                         "model": model, "hidden": hidden, "device": device, "steps": metrics.train_steps,
                         "job_seconds": total, "train_seconds_per_step": _step_seconds(spec, folder),
                         "test_loss": metrics.test_loss})
    return pd.DataFrame(rows)


def _step_seconds(spec, folder) -> float:
    """Seconds per training step (gapbench.train.train alone: forward, backward, clipping,
    Adam, the validation passes), timed on a fresh network after the job's warm-up."""
    from gapbench import data, job, train

    task = data.task_of(data.read_meta(folder))
    net = job.build_net(spec, task).to(spec.train.device)
    _sync()
    started = time.perf_counter()
    train.train(net, task, folder, "norm", 1.0, spec.train, torch.device(spec.train.device), log=lambda _: None)
    _sync()
    return (time.perf_counter() - started) / spec.train.steps


def engine_vs_cudnn(lengths=(100, 1000, 2000), hidden: int = 128, batch: int = 64) -> pd.DataFrame:
    from gapbench.engine import recurrence

    rows = []
    for steps in lengths:
        u = torch.randn(batch, steps, hidden, device="cuda", requires_grad=True)
        weight = (torch.randn(hidden, hidden, device="cuda") / hidden ** 0.5).requires_grad_()
        rnn = torch.nn.RNN(hidden, hidden, batch_first=True).cuda()

        def engine():
            out, _ = recurrence(u, weight)
            out.sum().backward()

        def cudnn():
            out, _ = rnn(u)
            out.sum().backward()

        t_engine, t_cudnn = _median_seconds(engine), _median_seconds(cudnn)
        rows.append({"T": steps, "engine_s": t_engine, "cudnn_rnn_s": t_cudnn, "engine_over_cudnn": t_engine / t_cudnn})
    return pd.DataFrame(rows)


def batched_runs(counts=(1, 4, 16, 64, 256), steps: int = 200, hidden: int = 128, batch: int = 64) -> pd.DataFrame:
    """R runs as one batched recurrence against R separate ones: forward+backward per run."""
    rows = []
    for runs in counts:
        weights = (torch.randn(runs, hidden, hidden, device="cuda") / hidden ** 0.5).requires_grad_()
        inputs = torch.randn(runs, steps, batch, hidden, device="cuda")

        def batched():
            h = torch.zeros(runs, batch, hidden, device="cuda")
            total = 0.0
            for t in range(steps):
                h = torch.tanh(torch.baddbmm(inputs[:, t], h, weights.transpose(1, 2)))
                total = total + h.sum() if t == steps - 1 else total
            total.backward()

        def separate():
            for r in range(min(runs, 16)):  # timed on at most 16, scaled to R: the same per-run cost
                w = weights[r].detach().requires_grad_()
                h = torch.zeros(batch, hidden, device="cuda")
                for t in range(steps):
                    h = torch.tanh(torch.addmm(inputs[r, t], h, w.t()))
                h.sum().backward()

        t_batched = _median_seconds(batched, 3)
        t_separate = _median_seconds(separate, 3) * runs / min(runs, 16)
        rows.append({"runs": runs, "T": steps, "batched_s": t_batched, "separate_s": t_separate,
                     "speedup": t_separate / t_batched, "runs_per_s_batched": runs / t_batched})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU side of the job timings")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    exact_float32()  # as a training job sets it: cuDNN's RNNs would use TF32 by default
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {platform.processor() or platform.machine()}",
          flush=True)
    parts = [("models", check_models), ("engine_vs_cudnn", engine_vs_cudnn), ("batched_runs", batched_runs),
             ("jobs", lambda: time_jobs(Path(tempfile.mkdtemp()), cpu_too=not args.no_cpu))]
    for name, part in parts:
        started = time.perf_counter()
        try:
            table = part()
        except Exception as error:  # one broken part must not hide the others' numbers
            print(f"\n{name}: FAILED: {type(error).__name__}: {error}", flush=True)
            import traceback

            traceback.print_exc()
            continue
        table.to_csv(args.out / f"gpu_{name}.csv", index=False)
        print(f"\n{name} ({time.perf_counter() - started:.0f} s)\n{table.to_string(index=False)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
