# Training: one job per (task, gap, model, seed) trains every clip arm from the same
# initial weights (a paired comparison, and one Python/torch start-up instead of three).
# Completed runs also go to the run cache, so a failed or killed job (whose outputs Snakemake
# deletes) costs no completed run: the rerun restores them (gapbench/results.py).


rule train:
    input:
        rules.generate_data.output,
    output:
        expand(f"{RUN_DIR}/{{file}}", clip=CLIPS, file=RUN_FILES, allow_missing=True),
    params:
        spec=run_spec,
        data=lambda wc: DATA_DIR.format(**wc),
        runs=run_folders,
        cache=f"{RESULTS}/cache/runs",
    log:
        f"{RESULTS}/logs/train/{{task}}/gap{{gap}}/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}/gap{{gap}}/{{model}}/seed{{seed}}.tsv"
    threads: config["threads_per_job"]
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=1 if config["train"]["device"] == "cuda" else 0,  # a cluster job asks for a GPU (--gpus=1)
    conda:
        "../../environment.yml"
    shell:
        "python -m gapbench train --spec {params.spec:q} --data {params.data:q}"
        " {params.runs} --cache {params.cache:q} 2> {log:q}"  # runs: quoted; threads: the spec's
