# Training: one job per (task, gap, model) trains every seed and clip arm of it in one process
# (one Python/torch start-up instead of one per run), each clip arm from its seed's initial
# weights (a paired comparison). Completed runs also go to the run cache, so a failed or
# killed job (whose outputs Snakemake deletes) costs no completed run: the rerun restores
# them (gapbench/results.py).


rule train:
    input:
        expand(rules.generate_data.output, seed=SEEDS, allow_missing=True),
    output:
        expand(f"{RUN_DIR}/{{file}}", clip=CLIPS, seed=SEEDS, file=RUN_FILES, allow_missing=True),
    params:
        runs=train_arguments,  # --spec SPEC --data DIR --run CLIP=FOLDER... per seed, shell-quoted
        cache=RUN_CACHE,
        code=train_code,  # the model's, the task's and the training code: an edit reruns its jobs
    log:
        f"{LOGS_DIR}/train/{{task}}/gap{{gap}}/{{model}}.log",
    benchmark:
        TRAIN_BENCHMARK
    threads: config["threads_per_job"]
    resources:
        mem_mb=3000,
        runtime=60 * len(SEEDS),
        gpu=1 if config["train"]["device"] == "cuda" else 0,  # a cluster job asks for a GPU (--gpus=1)
    shell:
        "python -m gapbench train {params.runs} --cache {params.cache:q} 2> {log:q}"  # threads: the spec's
