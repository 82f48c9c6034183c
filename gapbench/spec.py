"""The run specification: everything one training job needs besides its dataset, typed.

Built once from the validated pipeline config (`RunSpec.from_config`), passed to the job as
JSON (`to_json` / `from_json`: a round trip gives an equal object) and recorded in every
run's metrics.json. The training code reads attributes, never string keys.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class TrainConfig:
    """How every run is trained (config key `train`; defaults in the config schema)."""

    steps: int
    batch_size: int
    optimizer: str  # adam | sgd | rmsprop
    lr: float
    eval_every: int
    probe_batch: int  # test sequences the probes measure
    device: str = "cpu"  # cpu | cuda
    # on cuda: each step of the job's runs captured once as a CUDA graph and replayed (gapbench/graphed.py)
    cuda_graph: bool = False
    # stop once the validation split meets the task's success criterion at this many
    # evaluations in a row (0: always train every step); gapbench.train.train
    stop_when_solved: int = 0


@dataclass(frozen=True)
class RunSpec:
    """One (task entry, model entry, seed) of the grid; the job trains every clip arm of it.

    task and model are the config entries' labels (what the results call them); task_name,
    task_params, model_name and model_options are the registered task and model and their
    options, gap the dependency gap, hidden_size the model entry's (default: the grid's).
    """

    task: str
    task_name: str
    task_params: dict
    gap: int
    model: str
    model_name: str
    model_options: dict
    hidden_size: int
    seed: int
    threads: int  # torch threads per job: part of the spec because CPU kernels' sums depend on it
    clip_thresholds: dict[str, float]  # θ0 per clip arm (norm, value)
    train: TrainConfig

    @classmethod
    def from_config(cls, config: dict, task: str, gap: int, model: str, seed: int) -> RunSpec:
        """The spec of one job of a validated config; `task` is an entry's label."""
        from gapbench.config import model_entry, model_hidden_size, task_entry

        entry = task_entry(config, task)
        model_config = model_entry(config, model)
        return cls(
            task=task,
            task_name=entry["name"],
            task_params=dict(entry.get("params", {})),
            gap=int(gap),
            model=model,
            model_name=model_config["name"],
            model_options=dict(model_config.get("options", {})),
            hidden_size=model_hidden_size(config, model_config),
            seed=int(seed),
            threads=config["threads_per_job"],
            clip_thresholds=dict(config["clip"]["thresholds"]),
            train=TrainConfig(**config["train"]),
        )

    def to_dict(self) -> dict:
        """Plain data (what metrics.json records)."""
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict) -> RunSpec:
        values = json.loads(text) if isinstance(text, str) else dict(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown run-spec key(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{**values, "train": TrainConfig(**values["train"])})

    def threshold(self, clip: str) -> float | None:
        """θ0 of a clip arm; None for `none`."""
        return None if clip == "none" else self.clip_thresholds[clip]

