"""Le et al. 2015, adding at T = 150, with a longer budget than config/literature.yaml allows on
2 cores: does the IRNN / LSTM result appear with more steps? Run on a GPU:

    python docs/measurements/le2015_longer.py OUT_DIR STEPS MODEL [MODEL ...]

Each model: one seed (0), norm clipping θ = 1, Adam lr 1e-3, batch 64, H = 64, the literature
config's data sizes, evaluated every 1000 steps, stopping once solved at 3 evaluations in a row
(gapbench.job.run, the pipeline's own code; probes on the CPU). Prints the validation history.
"""
import json
import sys
import time
from pathlib import Path

from gapbench import data, job, tasks
from gapbench.files import read_csv
from gapbench.results import HISTORY_FILE
from gapbench.spec import RunSpec, TrainConfig

out, steps, models = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
folder = out / "adding150"
if not (folder / "meta.json").exists():
    data.generate(tasks.build("adding", 150), 0, {"train": 16384, "validation": 512, "test": 1024}, folder)
for model in models:
    spec = RunSpec(task="adding_le", task_name="adding", task_params={}, gap=150, model=model, model_name=model,
                   model_options={}, hidden_size=64, seed=0, threads=1, clip_thresholds={"norm": 1.0},
                   train=TrainConfig(steps=steps, batch_size=64, optimizer="adam", lr=1e-3, eval_every=1000,
                                     probe_batch=32, device="cuda", stop_when_solved=3))
    started = time.perf_counter()
    (metrics,) = job.run(spec, folder, {"norm": out / f"run_{model}"}, log=lambda m: print(m, flush=True))
    history = read_csv(out / f"run_{model}" / HISTORY_FILE)
    print(f"{model}: {metrics.train_steps} steps in {time.perf_counter() - started:.0f} s, test MSE "
          f"{metrics.test_loss:.4f} (baseline {metrics.baseline:.4f}), success {metrics.success}, "
          f"steps_to_solve {metrics.steps_to_solve}", flush=True)
    print(history[["step", "val_loss"]].to_string(index=False), flush=True)
    (out / f"{model}_metrics.json").write_text(json.dumps({k: getattr(metrics, k) for k in (
        "test_loss", "baseline", "success", "train_steps", "steps_to_solve", "stopped_early")}))
