"""A finished run's figures, knobs and labels, read from its results record: what every logger shows of a run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from hwbench.measure.training_summary import ACCURACY_TARGETS
from hwbench.record.parts import Inference, Metrics, Part, Rates, Resources
from hwbench.record.results import ResultsRecord

RUN = "run/"  # the run's figures' section (TensorBoard's Scalars, a tracker's metrics)
# the metrics TensorBoard's HParams table shows first (the rest are a tick away)
SHOWN_METRICS = ("train_samples_per_sec", "test_acc", "seconds_to_val_acc_0.97", "inference_samples_per_sec",
                 "inference_latency_ms_p50")  # fmt: skip
Reader = Callable[[ResultsRecord], Any]
# record parts whose every number is a run's figure, under a prefix (the inference's batch size is a setting)
PARTS: tuple[tuple[str, Reader, type[Part], tuple[str, ...]], ...] = (
    ("", lambda r: r.metrics, Metrics, ()),
    ("steady_", lambda r: r.training and r.training.steady, Rates, ()),
    ("overall_", lambda r: r.training and r.training.overall, Rates, ()),
    ("inference_", lambda r: r.inference, Inference, ("batch_size",)),
    ("", lambda r: r.resources, Resources, ()),
)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numeric_fields(model: type[Part], exclude: tuple[str, ...] = ()) -> list[str]:
    """The part's number fields, from its JSON schema (``Rate | None`` and the like)."""
    properties = model.model_json_schema()["properties"]
    return [name for name, p in properties.items() if name not in exclude
            and any(t.get("type") in ("number", "integer") for t in p.get("anyOf", [p]))]  # fmt: skip


def figure_readers() -> dict[str, Reader]:
    """Every figure a run can have, by name, and where the record holds it; the HParams tab's metrics, in order
    (the same for every run: runs from other machines and versions fill the same columns)."""
    readers: dict[str, Reader] = {
        "train_samples_per_sec": lambda r: r.train_speed.samples_per_sec if r.train_speed else None,  # the headline
        "train_seconds": lambda r: r.training.seconds if r.training else None,
        "wall_seconds": lambda r: r.wall_seconds,
    }
    for target in (f"{t:.2f}" for t in ACCURACY_TARGETS):
        readers[f"seconds_to_val_acc_{target}"] = lambda r, t=target: r.training and r.training.time_to_val_acc.get(t)
    for prefix, part_of, model, exclude in PARTS:
        for name in numeric_fields(model, exclude):
            readers[f"{prefix}{name}"] = lambda r, part_of=part_of, name=name: getattr(part_of(r), name, None)
    return {name: readers[name] for name in dict.fromkeys((*SHOWN_METRICS, *readers))}


# what energy's window and rates mean only where a counter measured them (a machine without RAPL or NVML has none)
ENERGY_FIGURES = ("energy_seconds", "average_watts", "samples_per_joule")


def run_figures(record: ResultsRecord) -> dict[str, float]:
    """The figures this run measured, by name (a CPU run has no GPU memory; a 1-epoch run no steady state; a
    machine without an energy counter no energy, nor the window it would have covered)."""
    values = {name: read(record) for name, read in figure_readers().items()}
    if not (record.resources and record.resources.energy_source):
        values = {name: v for name, v in values.items() if name not in ENERGY_FIGURES}
    return {name: float(v) for name, v in values.items() if is_number(v)}


def headline_figures(record: ResultsRecord) -> dict[str, float]:
    """The figures a reader looks for first, named to sort in this order (and before any lowercase group): test
    accuracy, steady training speed, MFU (the datasheet peak's, else the measured peak's), time to 97%. Only
    those measured; a noisy or unsteady run's speed says so in its name."""
    speed, training = record.train_speed, record.training
    notes = [w for w in ("overall" if record.train_basis == "overall" else "", "noisy" if record.noise else "",
                         "unsteady" if record.unsteady else "") if w]  # fmt: skip
    mfu = speed and (speed.mfu if speed.mfu is not None else speed.mfu_of_measured_peak)
    figures = {
        "1 test accuracy": record.metrics.test_acc if record.metrics else None,
        "2 train samples per s" + (f" ({', '.join(notes)})" if notes else ""): speed.samples_per_sec if speed else None,
        "3 MFU" + ("" if speed is None or speed.mfu is not None else " of measured peak"): mfu,
        "4 train s to 97% val acc": training.time_to_val_acc.get("0.97") if training else None,
    }
    return {name: float(v) for name, v in figures.items() if is_number(v)}


def hparam_values(cfg: DictConfig, record: ResultsRecord) -> dict[str, str | float | bool]:
    """The run's knobs and hardware, typed as TensorBoard's HParams table shows them: booleans as booleans;
    integers as their digits (it prints every number to five digits: 128 would read 128.00); the learning rate a
    number. Known once the job is set up (its fingerprint taken, its strategy chosen)."""
    fp = record.fingerprint
    params = {
        "arch": cfg.arch.name, "noisy": caveat(record), "data": cfg.data._target_.rsplit(".", 1)[-1],
        "device": cfg.device.name, "accelerator": fp.accelerator, "hardware": record.device_name,
        "host": fp.host, "cpu": fp.cpu, "gpu": fp.gpus[0].name if fp.gpus else "none",
        "threads": fp.threads, "world_size": record.world_size, "precision": str(cfg.device.precision),
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": float(cfg.lr), "seed": cfg.seed,
        "repeat": cfg.repeat,
        "optimizer": cfg.optim.optimizer._target_.rsplit(".", 1)[-1], "init": cfg.init,
        "execution": record.execution.kind if record.execution else "eager",
        "execution_mode": str(record.execution.mode if record.execution else None),
        "channels_last": bool(cfg.channels_last), "steps_per_execution": cfg.steps_per_execution,
        "inference_batch_size": cfg.inference_batch_size,
    }  # fmt: skip
    return {k: v if isinstance(v, (bool, float)) else str(v) for k, v in params.items()}


def caveat(record: ResultsRecord) -> str:
    """Why the run's speed is not a clean figure ('no' where it is): HParams shows it beside the figures."""
    return "; ".join(record.noise) or (f"unsteady: {record.unsteady}" if record.unsteady else "no")


def run_tags(record: ResultsRecord) -> dict[str, str]:
    """What a tracker labels a finished run with, to filter runs by: where it ran and how it ended."""
    fp = record.fingerprint
    tags = {"status": record.status, "noisy": str(bool(record.noise)).lower(),
            "host_bound": str(record.host_bound).lower()}  # fmt: skip
    if fp is not None:
        tags |= {"host": fp.host, "cpu": fp.cpu, "gpu": fp.gpus[0].name if fp.gpus else "none"}
    if record.reason:
        tags["reason"] = record.reason
    return tags
