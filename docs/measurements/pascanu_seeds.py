"""Pascanu et al. 2013 at T = 50 with more seeds than config/literature.yaml's four: does norm
clipping let the tanh RNN solve temporal order more often than no clipping? Runs the literature
config's own Pascanu entry at T = 50 only, through the pipeline (snakemake), for a range of seeds,
one folder per batch, then compares the two arms seed by seed:

    python docs/measurements/pascanu_seeds.py run OUT_DIR FIRST_SEED LAST_SEED   # one core
    python docs/measurements/pascanu_seeds.py report OUT_DIR [OUT_DIR ...]

Both arms of a seed start from the same weights and see the same batches, so the comparison is
paired: McNemar's exact test on the discordant seeds (solved in one arm only), two-sided,
p = min(1, 2 · P(Binomial(d, 1/2) ≤ min(b, c))) with d = b + c, and the difference of the two
fractions solved, (b − c) / n, with its 95% Wald interval. "Solved" is the pipeline's
success verdict (test loss below 0.1 × the memoryless baseline), as docs/literature.md uses.
"""
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

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


def run(out: Path, first: int, last: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "pascanu.yaml").write_text(CONFIG.format(first=first, last=last, seeds=list(range(first, last + 1))))
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(out),
                    "--cores", "1", "--configfile", str(ROOT / "config/literature.yaml"), str(out / "pascanu.yaml")],
                   check=True)


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
    return centre - half, centre + half


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


def report(folders: list[Path]) -> None:
    batches = []
    for folder in folders:
        table = read_table(folder / TABLES_DIR / table_file(ACCURACY_TABLE), rows=[[("gap", "==", 50)]])
        batches.append(table)
        seeds = batches[-1].seed
        print(f"{folder}: seeds {seeds.min()}..{seeds.max()}, code {', '.join(sorted(table.code_version.unique()))}")
        print(compare(batches[-1]))
    if len(batches) > 1:
        print("all batches together:")
        print(compare(pd.concat(batches)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"] and len(sys.argv) == 5 and all(a.isdigit() for a in sys.argv[3:]) \
            and int(sys.argv[3]) <= int(sys.argv[4]):
        run(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1:2] == ["report"] and len(sys.argv) > 2:
        report([Path(folder) for folder in sys.argv[2:]])
    else:
        sys.exit(__doc__ + "\n(run takes OUT_DIR and two seeds, FIRST_SEED <= LAST_SEED)")
