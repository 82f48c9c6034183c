# Training: one job per (task, gap, model) trains every seed and clip arm of it in one process,
# together (gapbench.train.train_runs), each clip arm from its seed's initial weights (a paired
# comparison). Snakemake tracks one file per job, its record job.json (JOB_RECORD), written
# after every run of the job is complete; each run's files, its own completion record
# metrics.json last, are written inside its folder by the job. Tracking every file of every run
# made Snakemake's own bookkeeping grow with the grid, and one record per run made its planning
# cost per job grow with the runs a job holds (15 in the paper grid). Completed runs also go to
# the run cache, so a failed or killed job (whose record Snakemake deletes) costs no completed
# run: the rerun restores them (gapbench/runstore.py).


rule train:
    input:
        expand(rules.generate_data.output, seed=SEEDS, allow_missing=True),
    output:
        JOB_RECORD,
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
        mem_mb=4000,  # the paper grid's largest measured peak 2,643 MB, about 3,000 at full length (docs/performance.md)
        runtime=train_runtime,  # minutes: from gapbench cost's estimate where calibrated (common.smk)
        gpu=1 if config["train"]["device"] == "cuda" else 0,  # a cluster job asks for a GPU (--gpus=1)
    shell:
        "python -m gapbench train {params.runs} --cache {params.cache:q} --record {output:q} 2> {log:q}"  # threads: the spec's
