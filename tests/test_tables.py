"""The collection's parts, without a pipeline (the pipeline tests collect the smoke run's tables):
the order runs are collected in, the fields of a result's path, a probe table streamed to Parquet."""
import pandas as pd
import pyarrow.parquet as pq
import pytest

from gapbench.reports import tables
from gapbench.results import TRAIN_BENCHMARK, fields_of


def test_runs_are_collected_in_key_order_with_gaps_and_seeds_as_numbers():
    folders = [f"results/runs/adding/gap{gap}/vanilla/none/seed{seed}" for gap, seed in
               ((10, 2), (8, 10), (10, 10), (8, 9))]
    assert sorted(folders, key=tables.run_order) == [folders[index] for index in (3, 1, 0, 2)]


def test_a_path_s_fields_are_read_from_the_whole_path_only():
    assert fields_of(TRAIN_BENCHMARK, "results/benchmarks/train/copy/gap5/lstm.tsv") == \
        {"task": "copy", "gap": "5", "model": "lstm"}
    with pytest.raises(ValueError, match="does not match"):
        fields_of(TRAIN_BENCHMARK, "results/benchmarks/train/copy/gap5/lstm.tsv.bak")


def _run(seed: int, rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"task": "adding", "seed": seed, "stage": "init", "lag": range(rows),
                         "log10_grad_norm": [-0.5 * lag - seed for lag in range(rows)]})


def test_a_probe_table_is_streamed_run_by_run_in_row_groups(tmp_path, monkeypatch):
    """Every run's rows, in order, in row groups of at most ROW_GROUP_ROWS (here 4) rows: the rows
    held are written once they reach it (runs of 3: at 6 rows, groups of 4 and 2), the rest at the end."""
    monkeypatch.setattr(tables, "ROW_GROUP_ROWS", 4)
    path = tmp_path / "gradient_decay.parquet"
    stream = tables._ParquetStream(path, "gradient_decay")
    runs = [_run(seed) for seed in range(3)]
    for seed, frame in enumerate(runs):
        stream.append(frame, f"run{seed}")
    assert stream.close() == 9
    written = pq.ParquetFile(path)
    assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [4, 2, 3]
    pd.testing.assert_frame_equal(written.read().to_pandas(), pd.concat(runs, ignore_index=True), check_dtype=False)


def test_a_run_whose_probe_table_differs_from_the_others_is_named(tmp_path):
    stream = tables._ParquetStream(tmp_path / "gradient_decay.parquet", "gradient_decay")
    stream.append(_run(0), "results/runs/a")
    with pytest.raises(ValueError, match=r"results/runs/b/gradient_decay.csv: columns .* differ from the other runs'"):
        stream.append(_run(1).drop(columns="stage"), "results/runs/b")
    with pytest.raises(ValueError, match=r"results/runs/c/gradient_decay.csv: a column does not match the other "
                                         "runs' types"):
        stream.append(_run(2).assign(lag="far"), "results/runs/c")
    stream.abandon()


def test_the_runs_collected_are_the_job_records_and_a_record_edited_by_hand_is_named(tmp_path):
    """The tables job reads its runs from the training jobs' records; a record that no longer
    parses is refused in one line naming it and the fix, not with a traceback."""
    first, second = tmp_path / "a" / "job.json", tmp_path / "b" / "job.json"
    for record, runs in ((first, ["r/a/none/seed0", "r/a/norm/seed0"]), (second, ["r/b/none/seed0"])):
        record.parent.mkdir()
        record.write_text('{"runs": ' + str(runs).replace("'", '"') + "}")
    assert tables.recorded_runs([first, second]) == ["r/a/none/seed0", "r/a/norm/seed0", "r/b/none/seed0"]
    second.write_text('{"runs": ["r/b/none/se')  # cut short
    with pytest.raises(tables.IncompleteRuns, match=f"{second} cannot be read .*delete it and run snakemake again"):
        tables.recorded_runs([first, second])
