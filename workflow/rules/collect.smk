# Tables from the run folders, figures from the tables.


rule tables:
    input:
        JOB_RECORDS,  # each training job's record, written once all its runs are complete: the runs collected
    output:
        # the per-lag probe tables (hundreds of thousands of rows) stay out of the HTML report
        **{
            name: report(path, caption="../report/tables.rst", category="Tables")
            if name in REPORT_TABLES
            else path
            for name, path in TABLE_FILES.items()
        },
    params:
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{LOGS_DIR}/tables.log",
    localrule: True
    script:
        "../scripts/tables.py"


# a job per page: a page that fails (a figure of the user's) costs no other page, and pages draw
# in parallel (the paper grid has 122); each job reads what its figure draws, as draw_all does
rule figures:
    input:
        **TABLE_FILES,
    output:
        report(expand(f"{FIGURES_DIR}/{{page}}.{{ext}}", ext=FIGURE_FORMATS, allow_missing=True),
               caption="../report/figures.rst", category="Figures"),
    params:
        tables=lambda wc, input: os.path.dirname(input[0]),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
        decay_gap=json.dumps(config["figures"]["decay_gap"]),
    log:
        f"{LOGS_DIR}/figures/{{page}}.log",
    localrule: True
    shell:
        "python -m gapbench figures --tables {params.tables:q} --out-dir {params.out_dir:q} --page {wildcards.page:q}"
        " --decay-gap {params.decay_gap:q} 2> {log:q}"


rule paper_tables:
    input:
        **{name: TABLE_FILES[name] for name in REPORT_TABLES},  # what the paper tables are built from
    output:
        report(PAPER_TABLES, caption="../report/paper_tables.rst", category="Paper tables"),
    params:
        tables=lambda wc, input: os.path.dirname(input[0]),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{LOGS_DIR}/paper_tables.log",
    localrule: True
    shell:
        "python -m gapbench paper-tables --tables {params.tables:q} --out-dir {params.out_dir:q} 2> {log:q}"
