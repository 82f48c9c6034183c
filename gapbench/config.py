"""Checks of a pipeline config beyond its JSON schema, and the per-run specification.

The schema (workflow/schemas/config.schema.yaml) fixes the structure and types; the
names of tasks and models come from their registries, so they are checked here, by
building every task at every gap and every model once, before any job runs.
"""
from __future__ import annotations

from gapbench import models, tasks


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key and the allowed values."""


def _unique(names: list, key: str) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"config key {key}: {repeated} listed more than once"
                          + ("; give repeated tasks distinct `label`s" if key == "tasks" else ""))


def task_label(entry: dict) -> str:
    """The name results use for a task entry: its `label`, else its registry name."""
    return entry.get("label", entry["name"])


def task_entry(config: dict, label: str) -> dict:
    return next(entry for entry in config["tasks"] if task_label(entry) == label)


def check_config(config: dict) -> None:
    _unique([task_label(entry) for entry in config["tasks"]], "tasks")
    _unique([entry["name"] for entry in config["models"]], "models")
    for entry in config["tasks"]:
        name, label = entry["name"], task_label(entry)
        if name not in tasks.names():
            raise ConfigError(f"config key tasks: unknown task {name!r}; allowed: {tasks.names()}")
        for gap in entry["gaps"]:
            try:
                tasks.build(name, gap, **entry["params"])
            except (ValueError, TypeError) as error:
                raise ConfigError(f"config key tasks[{label}] (gap {gap}): {error}") from None
    for entry in config["models"]:
        name = entry["name"]
        if name not in models.names():
            raise ConfigError(f"config key models: unknown model {name!r}; allowed: {models.names()}")
        if "batch_first" in entry["options"]:
            raise ConfigError(f"config key models[{name}].options.batch_first: the pipeline always feeds "
                              "(batch, time, features) tensors; remove this option")
        try:
            models.build(name, 2, 2, **entry["options"])
        except (ValueError, TypeError) as error:
            raise ConfigError(f"config key models[{name}].options: {error}") from None
    # clip arm and optimiser names are enums of the schema; only the pairing is checked here
    for arm in config["clip"]["arms"]:
        if arm != "none" and arm not in config["clip"]["thresholds"]:
            raise ConfigError(f"config key clip.thresholds.{arm}: missing threshold θ0 for clip arm {arm!r}")
    gaps = {task_label(entry): entry["gaps"] for entry in config["tasks"]}
    for task, gap in config["figures"]["decay_gap"].items():
        if gap not in gaps.get(task, []):
            raise ConfigError(
                f"config key figures.decay_gap.{task}: {gap} is not a gap of task {task!r} in this config"
            )
