"""Command line: `python -m gapbench VERB ...`; the Snakemake rules call these verbs (all but `cost`, which a
person runs before a grid)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gapbench.data import DatasetError
from gapbench.results import CALIBRATION, CALIBRATION_CUDA


class InputError(Exception):
    """Bad input named in the message (a task, gap or option): reported in one line."""


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None


def _clip_dir(text: str) -> tuple[str, str]:
    clip, sep, folder = text.partition("=")
    if not sep or not clip or not folder:
        raise argparse.ArgumentTypeError(f"expected CLIP=FOLDER, got {text!r}")
    return clip, folder


class _Grouped(argparse.Action):
    """`--spec` opens a run group; the `--data` and `--run`s after it belong to it. One process
    then trains several (task, gap, model, seed) jobs: one interpreter and torch start-up."""

    def __call__(self, parser, namespace, value, option_string=None):
        groups = getattr(namespace, "groups", None) or []
        if self.dest == "spec":
            groups.append({"spec": value, "data": None, "runs": []})
        elif not groups:
            parser.error(f"{option_string} comes before any --spec")
        elif self.dest == "data":
            if groups[-1]["data"] is not None:
                parser.error(f"two --data for one --spec ({groups[-1]['data']!r}, {value!r})")
            groups[-1]["data"] = value
        else:
            groups[-1]["runs"].append(value)
        namespace.groups = groups


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gapbench", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    gen = verbs.add_parser("generate", help="write one dataset (train/validation/test + meta.json)")
    gen.add_argument("--task", required=True)
    gen.add_argument("--gap", type=int, required=True)
    gen.add_argument("--seed", type=int, required=True)
    gen.add_argument("--params", type=_json, default={}, help="task options as JSON")
    gen.add_argument("--sizes", type=_json, required=True, help='{"train": n, "validation": n, "test": n}')
    gen.add_argument("--out", required=True)

    train = verbs.add_parser("train", help="train (task, gap, model, seed) jobs, each under every clip arm",
                             epilog="Repeat `--spec S --data D --run CLIP=FOLDER...` to train several seeds "
                                    "in one process.")
    train.add_argument("--spec", required=True, action=_Grouped,
                       help="run specification (gapbench.spec.RunSpec) as JSON; starts a group")
    train.add_argument("--data", required=True, action=_Grouped, help="dataset folder written by `generate`")
    train.add_argument("--run", type=_clip_dir, action=_Grouped, required=True, metavar="CLIP=FOLDER")
    train.add_argument("--cache", help="run cache folder: restore completed runs from it, store new ones in it")
    train.add_argument("--record", help="write the job's record here (the run folders it completed) once every "
                                        "run is complete")

    figures = verbs.add_parser("figures", help="draw the figures from the tables")
    figures.add_argument("--tables", required=True, help="folder holding the tables")
    figures.add_argument("--out-dir", required=True)
    figures.add_argument("--decay-gap", type=_json, default={}, help='{"task": gap}: the gap the per-lag figures (gradient decay, sensitivity, Jacobian spectrum, '
                                              'Lyapunov, memory capacity) show for that task')
    figures.add_argument("--page", action="append", dest="pages", metavar="STEM",
                         help="draw only this page (its file stem, e.g. accuracy_vs_gap or gradient_decay_page2); "
                              "repeat for more; default: every page of every figure")

    paper = verbs.add_parser("paper-tables", help="write the LaTeX and Markdown tables from the tidy tables")
    paper.add_argument("--tables", required=True, help="folder holding the tables")
    paper.add_argument("--out-dir", required=True)

    cost = verbs.add_parser("cost", help="jobs, core-hours or GPU-hours and memory a config will take",
                            description="What a grid costs before it runs, from measured per-step costs "
                                        "(the model: gapbench/reports/cost.py).")
    cost.add_argument("config", nargs="*", help="config files, merged over config/default.yaml in their order "
                                                "(as snakemake --configfile A B)")
    cost.add_argument("--device", choices=["cpu", "cuda"],
                      help="the device the grid trains on (default: the config's train.device)")
    cost.add_argument("--calibration", type=Path,
                      help=f"per-step costs of the device (default: {CALIBRATION} on cpu, {CALIBRATION_CUDA} on cuda)")
    cost.add_argument("--recalibrate", action="store_true", help="measure again even if calibrated")
    cost.add_argument("--extrapolate", action="store_true",
                      help="calibrate at T = 50 and 200 only, not at the grid's longer sequences (quicker; "
                           "underestimates long sequences, and the estimate says which jobs it extrapolates)")
    cost.add_argument("--check", type=Path, help="results/benchmarks/train of a finished run of this config")

    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, InputError, DatasetError) as error:  # bad or missing input: say which, no traceback
        print(f"gapbench {args.verb}: {error}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.verb == "generate":
        from gapbench import data, tasks

        try:  # an unknown task, a bad gap or option stops here with the registry's message
            task = tasks.build(args.task, args.gap, **args.params)
        except (ValueError, TypeError) as error:
            raise InputError(error) from None
        meta = data.generate(task, args.seed, args.sizes, args.out)
        print(f"wrote {args.out}: {meta['task']} gap={meta['gap']} seq_len={meta['seq_len']} "
              f"sizes={meta['sizes']}", file=sys.stderr)
    elif args.verb == "train":
        from gapbench import job
        from gapbench.spec import RunSpec

        groups = []
        for group in args.groups:  # every group checked before the first one trains
            try:
                spec = RunSpec.from_json(group["spec"])
            except (ValueError, TypeError, KeyError) as error:
                raise InputError(f"bad --spec: {error}") from None
            if group["data"] is None or not group["runs"]:
                raise InputError(f"--spec of {spec.task} gap {spec.gap} {spec.model} seed {spec.seed} "
                                 "needs one --data and at least one --run")
            groups.append((spec, group["data"], dict(group["runs"])))
        try:  # one job: every group's runs trained together
            job.run_all(groups, cache=args.cache)
        except ValueError as error:  # a dataset not the one its spec describes; seeds whose specs differ
            raise InputError(error) from None
        if args.record:  # last: Snakemake takes the job as done when this file exists
            job.write_record(args.record, [folder for _, _, runs in groups for folder in runs.values()])
    elif args.verb in ("figures", "paper-tables"):
        from gapbench.reports.tables import UnreadableTable

        try:
            if args.verb == "figures":
                from gapbench.reports import figures as drawing

                try:
                    drawing.draw_all(args.tables, args.out_dir, args.decay_gap, args.pages)
                except drawing.UnknownPage as error:
                    raise InputError(error) from None
            else:
                from gapbench.reports import paper_tables

                paper_tables.write_all(args.tables, args.out_dir)
        except UnreadableTable as error:
            raise InputError(error) from None
    elif args.verb == "cost":
        from gapbench.reports import cost

        return cost.run(args)
    return 0
