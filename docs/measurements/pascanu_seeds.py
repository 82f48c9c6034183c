"""Pascanu et al. 2013 at T = 50 with more seeds than config/literature.yaml's four: does norm
clipping let the tanh RNN solve temporal order more often than no clipping? Runs the literature
config's own Pascanu entry at T = 50 only, through the pipeline (snakemake), for a range of seeds,
one folder per batch, then compares the two arms seed by seed:

    python docs/measurements/pascanu_seeds.py run OUT_DIR FIRST_SEED LAST_SEED [--optimizer sgd --lr 0.01]
    python docs/measurements/pascanu_seeds.py report OUT_DIR [OUT_DIR ...] [--csv FILE]

Snakemake's jobs call the `python` on PATH; `run` puts the folder of the python running it first
on PATH, so the jobs use the same environment even where it is not activated. `--optimizer` and
`--lr` replace the config's (Adam, 10⁻³) for the folder's runs, everything else kept: the SGD arm
(Pascanu et al. trained with plain SGD; their code's default rate is 0.01). One core per folder.

Both arms of a seed start from the same weights and see the same batches, so the comparison is
paired: McNemar's exact test on the discordant seeds (solved in one arm only), two-sided,
p = min(1, 2 · P(Binomial(d, 1/2) ≤ min(b, c))) with d = b + c, and the difference of the two
fractions solved, (b − c) / n, with its 95% Wald interval. "Solved" is the pipeline's
success verdict (test loss below 0.1 × the memoryless baseline), as docs/literature.md uses.
`--csv FILE` also writes every run of the folders, one row per seed and arm (RUN_COLUMNS of the
accuracy table), as docs/measurements/pascanu_seeds_*.csv hold them.
"""
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

from gapbench.config import ConfigError, jobs_environment, load_config
from gapbench.optim import OPTIMIZERS
from gapbench.reports.tables import read_table
from gapbench.results import ACCURACY_TABLE, TABLES_DIR, table_file

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """# Pascanu et al. 2013 at T = 50 only, seeds {first}..{last} (docs/measurements/pascanu_seeds.py)
tasks:
  - {{name: temporal_order, label: temporal_order_pascanu, gaps: [50], params: {{relevant: 2}}, models: [vanilla]}}
models:
  - {{name: vanilla}}
seeds: {seeds}
"""
TRAINING = """train:
  optimizer: {optimizer}
  lr: {lr}
"""
RUN_COLUMNS = ["seed", "clip", "test_loss", "baseline", "test_score", "success", "train_steps", "stopped_early",
               "clip_fraction", "wall_seconds", "code_version"]


def run(out: Path, first: int, last: int, optimizer: str | None = None, lr: float | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    config = CONFIG.format(first=first, last=last, seeds=list(range(first, last + 1)))
    if optimizer is not None:
        config += TRAINING.format(optimizer=optimizer, lr=lr)
    (out / "pascanu.yaml").write_text(config)
    try:  # the config's own checks (the schema's lr > 0 among them), before any job
        load_config([ROOT / "config/literature.yaml", out / "pascanu.yaml"], cores=1)
    except ConfigError as error:
        raise SystemExit(f"{out / 'pascanu.yaml'}: {error}") from None
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(out),
                    "--cores", "1", "--configfile", str(ROOT / "config/literature.yaml"), str(out / "pascanu.yaml")],
                   check=True, env=jobs_environment())  # the jobs use this python's environment


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts."""
    d = only_a + only_b
    if d == 0:
        return 1.0
    tail = sum(math.comb(d, i) for i in range(min(only_a, only_b) + 1)) / 2 ** d
    return min(1.0, 2 * tail)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)  # exactly 0 and 1 at k = 0 and n but for rounding


def compare(runs: pd.DataFrame) -> str:
    solved = runs.pivot(index="seed", columns="clip", values="success").astype(bool)
    score = runs.pivot(index="seed", columns="clip", values="test_score")
    n = len(solved)
    lines = []
    for arm in ("none", "norm"):
        k = int(solved[arm].sum())
        low, high = wilson(k, n)
        lines.append(f"  {arm}: {k}/{n} seeds solved ({k / n:.2f}; 95% Wilson {low:.2f} to {high:.2f}), "
                     f"mean test accuracy {score[arm].mean():.3f}")
    both = int((solved.none & solved.norm).sum())
    only_norm, only_none = int((solved.norm & ~solved.none).sum()), int((solved.none & ~solved.norm).sum())
    difference = (only_norm - only_none) / n
    # the Wald interval of a paired difference of proportions: var = (b + c − (b − c)² / n) / n²
    half = 1.96 * math.sqrt(only_norm + only_none - (only_norm - only_none) ** 2 / n) / n
    lines.append(f"  paired by seed: both {both}, norm only {only_norm}, none only {only_none}, "
                 f"neither {n - both - only_norm - only_none}; McNemar exact two-sided p = "
                 f"{mcnemar_exact(only_norm, only_none):.3g}; norm − none {difference:+.3f} "
                 f"(95% Wald {difference - half:+.3f} to {difference + half:+.3f})")
    return "\n".join(lines)


def report(folders: list[Path], csv: Path | None = None) -> None:
    batches, trainings = [], set()
    for folder in folders:
        table = read_table(folder / TABLES_DIR / table_file(ACCURACY_TABLE), rows=[[("gap", "==", 50)]])
        batches.append(table)
        training = load_config([ROOT / "config/literature.yaml", folder / "pascanu.yaml"])["train"]  # as run
        trainings.add((training["optimizer"], training["lr"]))
        print(f"{folder}: seeds {table.seed.min()}..{table.seed.max()}, {training['optimizer']} at lr {training['lr']}, "
              f"code {', '.join(sorted(table.code_version.unique()))}")
        print(compare(table))
    if len(batches) > 1:
        # pooled only where they are one experiment: the same training, each seed once
        if len(trainings) > 1:
            raise SystemExit(f"the folders were trained differently ({sorted(trainings)}): report them one at a time")
        pooled = pd.concat(batches)
        if pooled.duplicated(["seed", "clip"]).any():
            raise SystemExit("the folders share seeds: report them one at a time")
        print("all batches together:")
        print(compare(pooled))
    if csv is not None:
        runs = pd.concat(batches)[RUN_COLUMNS].sort_values(["seed", "clip"])
        runs.to_csv(csv, index=False, float_format="%.6g")


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_command = commands.add_parser("run", help="train the Pascanu entry at T = 50 for seeds FIRST..LAST")
    run_command.add_argument("out", type=Path, metavar="OUT_DIR")
    run_command.add_argument("first", type=int, metavar="FIRST_SEED")
    run_command.add_argument("last", type=int, metavar="LAST_SEED")
    run_command.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                             help="instead of the config's adam (with --lr)")
    run_command.add_argument("--lr", type=float, help="the learning rate, with --optimizer")
    report_command = commands.add_parser("report", help="compare the arms seed by seed, per folder and pooled")
    report_command.add_argument("folders", type=Path, nargs="+", metavar="OUT_DIR")
    report_command.add_argument("--csv", type=Path, metavar="FILE", help="also write every run here")
    args = parser.parse_args(argv)
    if args.command == "run":
        if not 0 <= args.first <= args.last:
            parser.error(f"run needs 0 <= FIRST_SEED <= LAST_SEED, got {args.first} and {args.last}")
        if (args.optimizer is None) != (args.lr is None):
            parser.error("--optimizer and --lr go together")
        run(args.out, args.first, args.last, args.optimizer, args.lr)
    else:
        report(args.folders, args.csv)


if __name__ == "__main__":
    main(sys.argv[1:])
