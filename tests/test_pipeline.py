"""The real Snakemake pipeline on config/smoke.yaml: outputs, schemas, contract, idempotence."""
import json
import math
import re

import pandas as pd
import pytest
import torch
import yaml

from conftest import SMOKE, snakemake
from gapbench import models, tasks
from gapbench.config import task_label, task_models
from gapbench.models import Net
from gapbench.reports.figures import FIGURES as FIGURE_REGISTRY, figure_stems, shape_of_tables
from gapbench.reports.tables import TABLES, read_table, table_reader
from gapbench.results import ACCURACY_COLUMNS, KEYS, REPORT_TABLES, table_file
from gapbench.runstore import RUN_FILES

CONFIG = yaml.safe_load(SMOKE.read_text())
ENTRIES = {task_label(task): task for task in CONFIG["tasks"]}
GRID = [
    (label, gap, model, clip, seed)
    for label, task in ENTRIES.items() for gap in task["gaps"] for model in task_models(CONFIG, task)
    for clip in CONFIG["clip"]["arms"] for seed in CONFIG["seeds"]
]
FIGURES = list(FIGURE_REGISTRY)


def build_task(label, gap):
    return tasks.build(ENTRIES[label]["name"], gap, **ENTRIES[label].get("params", {}))


@pytest.fixture(scope="module")
def accuracy(smoke_run):
    return pd.read_csv(smoke_run / "results/tables/accuracy_vs_gap.csv")


@pytest.fixture(scope="module")
def decay(smoke_run):
    return read_table(smoke_run / "results/tables/gradient_decay.parquet")


@pytest.fixture(scope="module")
def summary(smoke_run):
    return pd.read_csv(smoke_run / "results/tables/propagation_summary.csv")


def test_smoke_covers_every_task_model_and_clip_arm_of_the_default():
    default = yaml.safe_load((SMOKE.parent / "default.yaml").read_text())
    assert {task_label(t) for t in default["tasks"]} <= set(ENTRIES)
    for entry in default["tasks"]:  # the same task options, so the smoke run tests what the default runs
        assert entry.get("params", {}) == ENTRIES[task_label(entry)].get("params", {})
    assert {m["name"] for m in default["models"]} <= {m["name"] for m in CONFIG["models"]}
    assert set(default["clip"]["arms"]) <= set(CONFIG["clip"]["arms"])


def test_accuracy_table_has_one_row_per_run(accuracy):
    assert list(accuracy.columns) == ACCURACY_COLUMNS
    keys = set(accuracy[["task", "gap", "model", "clip", "seed"]].itertuples(index=False, name=None))
    assert keys == set(GRID) and len(accuracy) == len(GRID)
    assert accuracy.metric.isin(["accuracy", "mse"]).all()
    assert (accuracy.train_steps == CONFIG["train"]["steps"])[~accuracy.diverged].all()
    assert accuracy.clip_fraction.between(0, 1).all()
    assert (accuracy[accuracy["clip"] == "none"].clip_fraction == 0).all()
    assert (accuracy[accuracy["clip"] == "value"].clip_fraction > 0).any()


def test_baselines_and_success_follow_their_formulas(accuracy):
    assert (accuracy.task_name == accuracy.task.map(lambda label: ENTRIES[label]["name"])).all()
    for row in accuracy.itertuples():
        assert row.baseline == pytest.approx(build_task(row.task, row.gap).baseline, rel=1e-12)
    copy = accuracy[accuracy.task == "copy"]
    assert ((copy.baseline - 10 * math.log(8) / (copy.gap + 20)).abs() < 1e-12).all()
    assert (copy.chance_score == 1 / 8).all() and (copy.metric == "accuracy").all()
    assert copy.test_score.between(0, 1).all()
    adding = accuracy[accuracy.task == "adding"]
    assert ((adding.baseline - 1 / 6).abs() < 1e-12).all() and (adding.metric == "mse").all()
    assert ((adding.test_score - adding.test_loss).abs() < 1e-12).all()
    assert (accuracy.success == ((accuracy.test_loss < 0.1 * accuracy.baseline) & ~accuracy.diverged)).all()


def test_gradient_decay_table_covers_every_lag(decay):
    assert set(KEYS + ["stage", "lag", "log10_grad_norm", "grad_norm", "log10_grad_norm_observed", "grad_norm_observed",
                       "decay_log10_per_step", "half_life_steps"]) == set(decay.columns)
    assert set(decay.stage) == {"init", "trained"}
    for (task, gap, *_), rows in decay.groupby(["task", "gap", "model", "clip", "seed", "stage"]):
        built = build_task(task, gap)
        assert sorted(rows.lag) == list(range(built.probe_step + 1))
    identity = decay[(decay.model == "identity")]
    spread = identity.groupby(["task", "gap", "clip", "seed", "stage"]).log10_grad_norm.agg(lambda s: s.max() - s.min())
    assert (spread < 1e-9).all()  # J = I: the gradient norm is the same at every lag


def test_propagation_summary_joins_accuracy_and_matches_theory(summary, accuracy):
    assert len(summary) == 2 * len(accuracy)  # one row per run and stage
    joined = accuracy.merge(summary[summary.stage == "trained"], on=KEYS, validate="one_to_one")
    assert len(joined) == len(accuracy)
    assert ((joined.clip_fraction - joined.clipped_fraction).abs() < 1e-12).all()
    identity = summary[summary.model == "identity"]  # J = I exactly: no decay, λ ≡ 0, ρ(W_h) = 1
    assert (identity.decay_log10_per_step.abs() < 1e-9).all() and (identity.lyapunov_max.abs() < 1e-9).all()
    assert ((identity.spectral_radius - 1).abs() < 1e-12).all()
    measured = summary[summary.memory_capacity.notna()]
    assert (measured.memory_capacity <= CONFIG["hidden_size"] + 0.5).all()  # MC ≤ N (Jaeger 2001)
    # MC is left NaN only where the driven states overflow: an expanding map (λ1 > 0)
    assert (summary[summary.memory_capacity.isna()].lyapunov_max > 0).all()
    vanilla = summary[(summary.model == "vanilla") & (summary.stage == "init")]
    assert (vanilla.decay_log10_per_step < 0).all() and (vanilla.lyapunov_max < 0).all()  # contracting at init


def test_every_table_is_written_with_run_keys(smoke_run):
    for name in TABLES:
        table = read_table(smoke_run / "results/tables" / table_file(name))
        assert set(KEYS) <= set(table.columns) and len(table) >= len(GRID), name
        runs = set(table[["task", "gap", "model", "clip", "seed"]].itertuples(index=False, name=None))
        assert runs == set(GRID), name


def test_run_folders_hold_metrics_history_probes_and_weights(smoke_run):
    task, gap, model, clip, seed = GRID[0]
    folder = smoke_run / f"results/runs/{task}/gap{gap}/{model}/{clip}/seed{seed}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(RUN_FILES)
    steps = pd.read_csv(folder / "steps.csv")
    assert list(steps.step) == list(range(1, CONFIG["train"]["steps"] + 1))
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["spec"]["seed"] == seed
    assert metrics["spec"]["train"] == {**CONFIG["train"], "device": "cpu", "cuda_graph": False, "stop_when_solved": 3}  # schema defaults
    for key in ("code_version", "torch", "numpy", "python"):
        assert metrics["provenance"][key]
    history = pd.read_csv(folder / "history.csv")
    assert list(history.step) == list(range(10, CONFIG["train"]["steps"] + 1, 10))
    built = build_task(task, gap)
    net = Net(models.build(model, built.input_size, CONFIG["hidden_size"]), built.output_size)
    net.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    meta = json.loads((smoke_run / f"results/data/{task}/gap{gap}/seed{seed}/meta.json").read_text())
    assert meta["baseline"] == built.baseline and set(meta["sha256"]) == {"train", "validation", "test"}


def test_figures_are_drawn(smoke_run):
    stems = figure_stems(shape_of_tables(table_reader(smoke_run / "results" / "tables")))
    assert {stem.split("_page")[0] for stem in stems} == set(FIGURES)  # every figure, on one or more pages
    for stem in stems:
        png = (smoke_run / f"results/figures/{stem}.png").read_bytes()
        pdf = (smoke_run / f"results/figures/{stem}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert pdf.startswith(b"%PDF")


def test_second_run_has_nothing_to_do(smoke_run):
    result = snakemake(smoke_run, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changed_training_config_reruns_training(smoke_run, tmp_path):
    changed = {**CONFIG, "train": {**CONFIG["train"], "steps": CONFIG["train"]["steps"] + 1}}
    configfile = tmp_path / "changed.yaml"
    configfile.write_text(yaml.safe_dump(changed))
    result = snakemake(smoke_run, "--dry-run", configfile=configfile)
    output = result.stdout + result.stderr
    assert "rule train:" in output and "rule generate_data:" not in output


@pytest.mark.pipeline
def test_lint_is_clean(tmp_path):
    """Snakemake's linter finds nothing but one deliberate choice: no rule names a conda
    environment, because the jobs run in the one environment gapbench is installed in
    (docs/clusters.md); an environment built from environment.yml alone would lack it."""
    result = snakemake(tmp_path, "--lint", check=False)
    output = result.stdout + result.stderr
    assert "Error" not in output and "Traceback" not in output, output
    lints = re.findall(r"^    \* (.+?):?$", output, flags=re.MULTILINE)
    assert lints and set(lints) == {"Specify a conda environment or container for each rule."}, output


def test_paper_tables_are_written_from_the_tidy_tables(smoke_run, accuracy):
    from gapbench.reports.paper_tables import PAPER_TABLES
    from gapbench.results import PAPER_TABLE_FORMATS

    folder = smoke_run / "results" / "paper"
    for name in PAPER_TABLES:
        latex = (folder / f"{name}.tex").read_text()
        assert "\\toprule" in latex and "\\caption{" in latex and "\\label{tab:gapbench-" in latex
        typeset = re.sub(r"\\label\{[^}]*\}", "", latex)  # a label is not typeset: it keeps a task's '_'
        assert "_" not in typeset.replace("W_h", "").replace("\\_", "").replace("lambda_1", ""), name  # escaped
        assert (folder / f"{name}.md").read_text().count("\n|") > 2
    assert {p.suffix[1:] for p in folder.iterdir()} == set(PAPER_TABLE_FORMATS)
    # the largest gap solved, recomputed here from accuracy_vs_gap, appears in its table
    seeds = accuracy.groupby(["task", "model", "clip", "gap"]).success.agg(["sum", "count"]).reset_index()
    solved = seeds[seeds["sum"] >= seeds["count"] / 2]
    lines = [line.strip("|").split("|") for line in (folder / "largest_gap_solved.md").read_text().splitlines()
             if line.startswith("|") and not line.startswith("|:")]
    table = pd.DataFrame([[cell.strip() for cell in row] for row in lines[1:]],
                         columns=[cell.strip() for cell in lines[0]]).set_index(["task", "model"])
    longest = table.pop("largest gap run")
    assert (longest == accuracy.groupby("task").gap.max().astype(str).reindex(table.index, level="task")).all()
    expected = solved.loc[solved.groupby(["task", "model", "clip"]).gap.idxmax()]
    for task, model, clip, gap, k, n in expected[["task", "model", "clip", "gap", "sum", "count"]].itertuples(index=False):
        written = ("≥" if str(gap) == longest[(task, model)] else "") + str(gap) + ("" if k == n else f" ({k}/{n})")
        assert table.loc[(task, model), f"clip {clip}"] == written
    unsolved = table.stack()
    assert (unsolved == "—").sum() == len(unsolved) - len(expected)


def test_the_report_holds_every_figure_and_paper_table_and_the_small_tables(smoke_run, tmp_path):
    """`snakemake --report` (here the zip: the HTML page and the files it shows) holds every figure
    and paper table the run wrote, each in its category, and the two small tables, none of the
    per-lag Parquet tables (millions of rows at paper size): what the rules declare as report
    outputs, in every format written."""
    import zipfile

    snakemake(smoke_run, "--report", str(tmp_path / "report.zip"))
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
        html = archive.read(next(name for name in names if name.endswith("report.html"))).decode(errors="replace")
    shown = {name.rsplit("/", 1)[1] for name in names if "/data/raw/" in name}
    written = {path.name for folder in ("figures", "paper") for path in (smoke_run / "results" / folder).iterdir()}
    assert shown == written | {table_file(name) for name in REPORT_TABLES}
    assert len(html) > 100_000 and all(category in html for category in ('"Tables"', "Figures", "Paper tables"))
    # the tables job's entry lists no run folder (read from the job records, not its params: 21,630 at paper size)
    assert not re.search(r"results/runs/[^\"'<]*/seed[0-9]", html)
    # the front page says the steps are a budget where runs stop early once solved
    assert re.search(r"at most [0-9]+ training(\s|\\n)+steps \(a run stops early", html)  # JSON-escaped text


def test_every_file_written_is_tracked_and_each_rule_logs_to_its_own_file(smoke_run):
    """Every file under results/ that a rule writes is one Snakemake knows as an output (deleted,
    it is made again; --delete-all-output removes it), and the three collecting rules and every
    job write their own logs: one rule's log written over by another's would be lost."""
    summary = snakemake(smoke_run, "--detailed-summary").stdout
    tracked = {line.split("\t")[0] for line in summary.splitlines()[1:] if line}
    results = smoke_run / "results"
    written = {str(path.relative_to(smoke_run)) for folder in ("figures", "paper", "tables")
               for path in (results / folder).iterdir()}
    assert written and written <= tracked, sorted(written - tracked)
    logs = {str(path.relative_to(results / "logs")) for path in (results / "logs").rglob("*.log")}
    datasets = {f"generate_data/{task}/gap{gap}/seed{seed}.log" for task, gap, *_, seed in GRID}
    jobs = {f"train/{task}/gap{gap}/{model}.log" for task, gap, model, *_ in GRID}
    pages = {f"figures/{stem}.log" for stem in figure_stems(shape_of_tables(table_reader(results / "tables")))}
    assert logs == {"tables.log", "paper_tables.log"} | pages | datasets | jobs


@pytest.mark.parametrize("given, expected", [
    ((), "Submitting maximum 3000 job(s) over 30.0 second(s)."),  # Snakemake's default, replaced
    (("--max-jobs-per-timespan", "50/1s"), "Submitting maximum 50 job(s) over 1.0 second(s)."),  # the user's, kept
])
def test_scheduler_wakes_thirty_times_less_often_unless_told(tmp_path, given, expected):
    """common.smk replaces Snakemake's default job rate limit (100 jobs per 1 s, whose wake-up
    timers made Snakemake's own CPU grow with the jobs finished) by the same rate over 30 s when
    the run starts; a limit the user gives stands. A real (one-job) run, with its debug log."""
    result = snakemake(tmp_path, "--verbose", *given, "results/data/copy/gap2/seed0/meta.json")
    log = result.stdout + result.stderr
    limiters = re.findall(r"Submitting maximum .*", log)  # each limiter built logs its limit
    assert limiters and limiters[-1] == expected  # the last: the one the jobs ran under
    assert (tmp_path / "results/data/copy/gap2/seed0/meta.json").exists()
    # the wake-ups left pending at the end cancelled (onsuccess): else Snakemake waits out the last,
    # up to 30 s under the workflow's limiter (one is pending then; a 1 s one may have fired)
    cancelled = re.findall(r"cancelled (\d+) pending scheduler wake-up", log)
    assert cancelled and (given or int(cancelled[-1]) >= 1), log[-3000:]


def test_the_schema_s_defaults_are_the_default_config_s():
    """config/default.yaml is merged under every config, so where it sets a key it owns the
    default; a schema default that differs would take effect only for a config prepared without
    it, and mislead whoever reads the schema. (Keys default.yaml leaves out take the schema's.)"""
    from gapbench.config import DEFAULT_CONFIG, SCHEMA

    def defaults(node, path=()):  # (key path, default) of every property that states one
        for key, child in node.get("properties", {}).items():
            if "default" in child and child["default"] != {}:
                yield path + (key,), child["default"]
            yield from defaults(child, path + (key,))

    missing, default_config = object(), yaml.safe_load(DEFAULT_CONFIG.read_text())
    compared = 0
    for path, value in defaults(yaml.safe_load(SCHEMA.read_text())):
        node = default_config
        for key in path:
            node = node.get(key, missing) if isinstance(node, dict) else missing
        if node is not missing:
            compared += 1
            assert node == value, f"schema default of {'.'.join(path)}: {value!r}, config/default.yaml: {node!r}"
    assert compared >= 10
