"""What lyapunov's ROUNDING_MARGIN changes on a grid's networks: every run's Lyapunov exponents
(the probe's own code, on its probe batch) with the margin at 1 (numpy.linalg.matrix_rank's rule
alone) and at its value, for the trained weights (model.pt) and the initial ones (the seed's
network, rebuilt); prints the runs whose count of −inf exponents, λ1 or Σλ differ.

    python docs/measurements/lyapunov_margin_grid.py RESULTS   (a grid's results/ folder)
"""
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from gapbench import data, job
from gapbench.spec import RunSpec
from gapbench.train import batches

torch.set_num_threads(1)
lyapunov_module = importlib.import_module("gapbench.probes.lyapunov")
margin = lyapunov_module.ROUNDING_MARGIN
results = Path(sys.argv[1])
changed = total = 0
for metrics_path in sorted(results.glob("runs/*/*/*/*/*/metrics.json")):
    metrics = json.loads(metrics_path.read_text())
    spec = RunSpec.from_json(metrics["spec"])
    data_dir = results / "data" / spec.task / f"gap{spec.gap}" / f"seed{spec.seed}"
    task = data.task_of(data.read_meta(data_dir))
    x = next(batches(data_dir, "test", spec.train.probe_batch, "cpu"))[0]
    for stage in ("init", "trained"):
        net = job.build_net(spec, task)
        if stage == "trained":
            net.load_state_dict(torch.load(metrics_path.parent / "model.pt", weights_only=True))
        exponents = {}
        for value in (1.0, margin):
            lyapunov_module.ROUNDING_MARGIN = value
            with job.exact_subnormals():
                exponents[value] = lyapunov_module.lyapunov(net.rnn, x).exponent.to_numpy()
        lyapunov_module.ROUNDING_MARGIN = margin
        rule, kept = exponents[1.0], exponents[margin]
        total += 1
        if not np.array_equal(rule, kept):
            changed += 1
            print(f"{spec.task} gap {spec.gap} {spec.model} {metrics['clip']} seed {spec.seed} {stage}: -inf "
                  f"{int(np.isneginf(rule).sum())} -> {int(np.isneginf(kept).sum())} of {len(kept)}, "
                  f"λ1 {rule[0]:.6g} -> {kept[0]:.6g}, Σλ {rule.sum():.6g} -> {kept.sum():.6g}", flush=True)
print(f"torch {torch.__version__}; margin {margin:g}; {changed} of {total} networks (runs × stages) differ")
