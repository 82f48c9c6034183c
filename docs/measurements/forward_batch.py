"""Where a random_guess evaluation's time goes at T = 1000 (H = 128, one thread): gapbench.train.evaluate
over a dataset folder's validation split, against reading the split alone and the forward passes alone
(at the job's evaluation batch and at 64 sequences), each the best of three:

    python docs/measurements/forward_batch.py results/data/adding/gap1000/seed0 adding 1000

Measured with it: docs/measurements/paper_jobs_59b603e.txt (and docs/clusters.md).
"""
import sys
import time

import torch
from gapbench import models, tasks
from gapbench.train import batches, evaluate, evaluation_batch

SMALL_BATCH = 64  # the training batch, at which gapbench cost timed the pass before 4431828

folder, task_name, gap = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
torch.set_flush_denormal(True)  # as a job runs
task = tasks.build(task_name, gap)
torch.manual_seed(0)
net = models.Net(models.build("random_guess", task.input_size, 128), task.output_size)
with torch.no_grad():
    for p in net.parameters():
        p.uniform_(-1, 1)
eb = evaluation_batch(task.seq_len, "cpu")


def best(function, repeats=3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


read = best(lambda: [None for _ in batches(folder, "validation", eb, "cpu")])
pre = list(batches(folder, "validation", eb, "cpu"))
pre64 = list(batches(folder, "validation", SMALL_BATCH, "cpu"))
with torch.no_grad():
    fwd = best(lambda: [net(x) for x, _ in pre])
    fwd64 = best(lambda: [net(x) for x, _ in pre64])
whole = best(lambda: evaluate(net, task, folder, "validation", "cpu"))
n = sum(len(x) for x, _ in pre)
print(f"{task_name} gap {gap} T={task.seq_len} validation n={n} eval batch {eb}: evaluate {whole:.3f} s; "
      f"read {read:.3f} s; forward at {eb} {fwd:.3f} s; forward at {SMALL_BATCH} {fwd64:.3f} s")
