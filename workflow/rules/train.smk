# Training: one job per (task, gap, model, seed) trains every clip arm from the same
# initial weights (a paired comparison, and one Python/torch start-up instead of three).


rule train:
    input:
        rules.generate_data.output,
    output:
        expand(f"{RUN_DIR}/{{file}}", clip=CLIPS, file=RUN_FILES, allow_missing=True),
    params:
        spec=run_spec,
        data=lambda wc: DATA_DIR.format(**wc),
        runs=run_folders,
    log:
        f"{RESULTS}/logs/train/{{task}}/gap{{gap}}/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}/gap{{gap}}/{{model}}/seed{{seed}}.tsv"
    threads: config["threads_per_job"]
    resources:
        mem_mb=3000,
        runtime=60,
    conda:
        "../../environment.yml"
    shell:
        "python -m gapbench train --spec {params.spec:q} --data {params.data:q}"
        " {params.runs} --threads {threads} 2> {log}"
