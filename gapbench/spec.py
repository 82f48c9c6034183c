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


@dataclass(frozen=True)
class RunSpec:
    """One (task entry, model, seed) of the grid; the job trains every clip arm of it.

    task is the config entry's label (what the results call it); task_name and task_params
    are the registered task and its options, gap its dependency gap.
    """

    task: str
    task_name: str
    task_params: dict
    gap: int
    model: str
    model_options: dict
    hidden_size: int
    seed: int
    threads: int  # torch threads per job: part of the spec because CPU kernels' sums depend on it
    clip_thresholds: dict[str, float]  # θ0 per clip arm (norm, value)
    train: TrainConfig

    @classmethod
    def from_config(cls, config: dict, task: str, gap: int, model: str, seed: int) -> RunSpec:
        """The spec of one job of a validated config; `task` is an entry's label."""
        from gapbench.config import task_entry

        entry = task_entry(config, task)
        model_entry = next(e for e in config["models"] if e["name"] == model)
        return cls(
            task=task,
            task_name=entry["name"],
            task_params=dict(entry.get("params", {})),
            gap=int(gap),
            model=model,
            model_options=dict(model_entry.get("options", {})),
            hidden_size=config["hidden_size"],
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

