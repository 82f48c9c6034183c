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
        # every job's record too: a record deleted after the tables were made (a failed job's
        # output) is remade, its completed runs restored from the run cache
        JOB_RECORDS,
    default_target: True
