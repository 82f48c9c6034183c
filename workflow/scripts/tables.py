# Collect the run folders into the tidy tables. A script rather than a shell command, so
# that a grid of any size never meets the shell's limit on the length of one argument.
import sys

from gapbench.tables import collect

with open(snakemake.log[0], "w") as log:  # noqa: F821 (snakemake is injected)
    sys.stderr = log
    accuracy, decay = collect(snakemake.params.runs, snakemake.output.accuracy, snakemake.output.decay)  # noqa: F821
    print(f"{len(accuracy)} runs, {len(decay)} gradient-decay rows", file=log)
