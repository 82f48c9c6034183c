# Datasets: one folder per (task label, gap, seed), generated deterministically.


rule generate_data:
    output:
        splits=expand(f"{DATA_DIR}/{{split}}.npz", split=DATA_SPLITS, allow_missing=True),
        meta=f"{DATA_DIR}/meta.json",
    params:
        task_name=lambda wc: task_entry(config, wc.task)["name"],
        task_params=lambda wc: json.dumps(task_entry(config, wc.task)["params"], sort_keys=True),
        sizes=json.dumps(config["data"]["sizes"], sort_keys=True),
        out=lambda wc: DATA_DIR.format(**wc),
        code=data_code,  # the task's source: an edit reruns its datasets (common.smk)
    log:
        f"{LOGS_DIR}/generate_data/{{task}}/gap{{gap}}/seed{{seed}}.log",
    benchmark:
        DATA_BENCHMARK
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m gapbench generate --task {params.task_name:q} --gap {wildcards.gap:q}"
        " --seed {wildcards.seed:q} --params {params.task_params:q} --sizes {params.sizes:q}"
        " --out {params.out:q} 2> {log:q}"
