# Tables from the run folders, figures from the tables.


rule tables:
    input:
        [f"{run}/{name}" for run in all_run_dirs() for name in ("metrics.json", "gradient_decay.csv")],
    output:
        accuracy=report(ACCURACY_TABLE, caption="../report/accuracy_table.rst", category="Tables"),
        decay=report(DECAY_TABLE, caption="../report/decay_table.rst", category="Tables"),
    params:
        runs=all_run_dirs(),
    log:
        f"{RESULTS}/logs/tables.log",
    localrule: True
    conda:
        "../../environment.yml"
    script:
        "../scripts/tables.py"


rule figures:
    input:
        accuracy=ACCURACY_TABLE,
        decay=DECAY_TABLE,
    output:
        report(
            FIGURES,
            caption="../report/figures.rst",
            category="Figures",
        ),
    params:
        out_dir=lambda wc, output: os.path.dirname(output[0]),
        decay_gap=json.dumps(config["figures"]["decay_gap"]),
    log:
        f"{RESULTS}/logs/figures.log",
    localrule: True
    conda:
        "../../environment.yml"
    shell:
        "python -m gapbench figures --accuracy {input.accuracy} --decay {input.decay}"
        " --out-dir {params.out_dir} --decay-gap {params.decay_gap:q} 2> {log}"
