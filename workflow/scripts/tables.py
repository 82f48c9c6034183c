# Collect the run folders into the tidy tables. A script rather than a shell command, so
# that a grid of any size never meets the shell's limit on the length of one argument.
import sys
import traceback

from gapbench.reports.tables import IncompleteRuns, collect, recorded_runs

with open(snakemake.log[0], "w") as log:  # noqa: F821 (snakemake is injected)
    sys.stderr = log
    try:
        rows = collect(recorded_runs(snakemake.input), snakemake.params.out_dir)  # noqa: F821
    except IncompleteRuns as error:  # one line in the log, no traceback: it names the file and what to do
        print(f"error: {error}", file=log)
        sys.exit(1)
    except Exception:  # written while the log is open: after it, the traceback would be lost
        traceback.print_exc(file=log)
        sys.exit(1)
    finally:
        sys.stderr = sys.__stderr__
    for name, count in rows.items():
        print(f"{name}: {count} rows", file=log)
