"""Two checkouts of gapbench run the same grid at the same time, side by side, each on its own
core; prints their job CPU, wall time, Snakemake's own CPU, the ratios, and every run whose
success verdict differs.

    python benchmarks/grid_side_by_side.py --config config/default.yaml --out /tmp/side \
        --a /work/base /work/basevenv/bin/python --b . .venv/bin/python

Each checkout runs `snakemake --cores 1` on its own copy of the config in OUT/a and OUT/b, started
together, so both see the same machine load (this machine is noisy: a run alone, then the other,
would compare two loads, not two codes). Snakemake's own CPU is its process's utime + stime
(/proc/PID/stat, children excluded, read until it exits); the jobs' CPU is the CPU of the whole
`snakemake` process tree (wait4's rusage: every job it waited for) minus Snakemake's own. The sum
of Snakemake's benchmark files' `cpu_time` is printed beside it (psutil samples: a lower bound).
Results: OUT/summary.txt.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from gapbench.config import jobs_environment
from gapbench.files import read_benchmark
from gapbench.reports import compare


def run_grid(root: Path, python: Path, config: Path, workdir: Path, result: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    env = jobs_environment(python)
    command = [str(python), "-m", "snakemake", "--snakefile", str(root / "Snakefile"), "--directory", str(workdir),
               "--workflow-profile", "none", "--cores", "1", "--configfile", str(config)]
    started, own = time.monotonic(), 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    with open(workdir / "snakemake.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        while True:
            # wait4: the child's rusage once it ends, its waited-for descendants (the jobs) included
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            try:  # Snakemake's own CPU, children excluded: utime + stime of /proc/PID/stat
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                own = (int(fields[11]) + int(fields[12])) / ticks
            except (OSError, IndexError):
                pass
            time.sleep(0.5)
    tree = usage.ru_utime + usage.ru_stime
    result.update(wall=time.monotonic() - started, status=os.waitstatus_to_exitcode(status), tree_cpu=tree,
                  own=own, jobs=tree - own)


def benchmark_cpu(workdir: Path) -> float:
    """The jobs' CPU as Snakemake's benchmark files record it (psutil, sampled: a lower bound)."""
    return sum(read_benchmark(p).cpu_time for p in (workdir / "results" / "benchmarks").rglob("*.tsv"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--a", nargs=2, metavar=("ROOT", "PYTHON"), required=True, help="the reference checkout")
    parser.add_argument("--b", nargs=2, metavar=("ROOT", "PYTHON"), required=True, help="the checkout measured")
    args = parser.parse_args(argv)
    sides = {"a": args.a, "b": args.b}
    results = {name: {} for name in sides}
    threads = [threading.Thread(target=run_grid, args=(Path(root).resolve(), Path(python).absolute(),
                                                        args.config.resolve(), args.out / name, results[name]))
               for name, (root, python) in sides.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = [f"config {args.config}; machine {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}"]
    for name, (root, _) in sides.items():
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        r = results[name]
        if r["status"] != 0:
            raise SystemExit(f"{name} ({root}) failed: see {args.out / name / 'snakemake.log'}")
        sampled = benchmark_cpu(args.out / name)
        lines.append(f"{name} {root} ({commit}): wall {r['wall']:.0f} s, job CPU {r['jobs']:.0f} s (Snakemake's "
                     f"benchmark files: {sampled:.0f} s), Snakemake's own CPU {r['own']:.1f} s "
                     f"({100 * r['own'] / r['jobs']:.1f}% of the jobs')")
    a, b = results["a"], results["b"]
    lines.append(f"b / a: wall {b['wall'] / a['wall']:.3f}x, job CPU {b['jobs'] / a['jobs']:.3f}x")
    tables = [compare.read(args.out / name / "results" / "tables" / "accuracy_vs_gap.csv") for name in sides]
    lines.append(compare.report(compare.compare(*tables), "a", "b"))
    text = "\n".join(lines) + "\n"
    (args.out / "summary.txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
