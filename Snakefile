# gapbench: how far back can a recurrent network carry information, and why does it fail?
# `snakemake --cores N` runs the grid in config/default.yaml; see README.md.
from snakemake.utils import min_version

min_version("9.17")


configfile: f"{workflow.basedir}/config/default.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/collect.smk"


rule all:
    input:
        TABLE_FILES.values(),
        FIGURES,
        PAPER_TABLES,
        # every run folder too: a run deleted after the tables were made (a failed job's
        # outputs) is restored from the run cache, not left missing behind up-to-date tables
        [f"{run}/{COMPLETE_MARKER}" for run in all_run_dirs()],
    default_target: True
