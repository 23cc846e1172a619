"""Figures no machine produces: a record that claims one is refused where it is read (``read_record``).

The schema checks a figure's type and sign, not its size, and records are copied between machines and edited by
hand: a claimed 1e308 samples/s would be every speed-up's baseline and a 309-digit cell. The speeds are bounded by
the work they stand for: samples/s times the record's own FLOPs per sample (at least ``MIN_FLOPS_PER_SAMPLE``,
where it gives none or fewer) may not pass ``MAX_FLOPS_PER_DEVICE`` times its devices. The other bounds are as
generous: what a record under them claims may be wrong, but it is not impossible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from hwbench.record.parts import Rates

if TYPE_CHECKING:
    from hwbench.record.results import ResultsRecord

# FLOP/s: ten times the densest low-precision peak of any accelerator (an NVIDIA B200: 9e15 at FP4, sparsity off)
MAX_FLOPS_PER_DEVICE = 1e17
# any classifier of 28x28 images does at least a multiply and an add per input pixel for each sample it sees
MIN_FLOPS_PER_SAMPLE = 2 * 28 * 28
MAX_FLOPS_PER_JOULE = 1e14  # ten times the ceiling above at 1 kW (a B200's 9e15 FLOP/s at 1 kW is 9e12)
MAX_DEVICES = 1_000_000  # no job has trained on a million devices
MAX_MFU = 10.0  # 1,000% of a peak: well past a wrong peak table, short of nonsense
MAX_SECONDS = 1e9  # 31 years
MAX_WATTS = 1e6  # a megawatt a device


def impossible(record: ResultsRecord) -> str | None:
    """Why ``record`` claims what no machine does (its first such figure, in one line); None where it does not."""
    if not 1 <= record.world_size <= MAX_DEVICES:
        return f"world_size: {record.world_size} devices is not a number of devices a job runs on"
    per_node = record.devices_per_node
    split = per_node * record.nodes if per_node is not None else record.world_size
    if not 1 <= record.nodes <= record.world_size or split != record.world_size:
        return f"world_size: {record.world_size} is not nodes x devices_per_node ({record.nodes} x {per_node})"
    return next(claims(record), None)


def claims(record: ResultsRecord) -> Iterator[str]:
    devices = record.world_size
    ceiling = MAX_FLOPS_PER_DEVICE * devices
    training, inference, resources = record.training, record.inference, record.resources
    counted = training.flops_per_sample if training else None
    # capped before float(): a JSON integer may have a thousand digits
    train = float(max(min(counted.train, 10**30), MIN_FLOPS_PER_SAMPLE) if counted else MIN_FLOPS_PER_SAMPLE)
    forward = float(max(min(counted.forward, 10**30), MIN_FLOPS_PER_SAMPLE) if counted else MIN_FLOPS_PER_SAMPLE)
    basis = "training.flops_per_sample" if counted else f"at least {MIN_FLOPS_PER_SAMPLE:,}"

    def speed(where: str, samples_per_sec: float | None, flops: float) -> Iterator[str]:
        if samples_per_sec is not None and samples_per_sec * flops > ceiling:
            yield (f"{where}: {samples_per_sec:.3g} samples/s at {flops:.3g} FLOPs a sample ({basis}) is "
                   f"{samples_per_sec * flops:.3g} FLOP/s, more than {devices} device(s) can do "
                   f"({MAX_FLOPS_PER_DEVICE:.0e} FLOP/s each at most)")  # fmt: skip

    def at_most(where: str, value: float | None, limit: float, unit: str) -> Iterator[str]:
        if value is not None and value > limit:
            yield f"{where}: {value:.3g} {unit} is impossible (at most {limit:.3g})"

    if training is not None:
        for name in ("overall", "steady"):
            rates: Rates | None = getattr(training, name)
            if rates is not None:
                yield from speed(f"training.{name}.samples_per_sec", rates.samples_per_sec, train)
                yield from at_most(f"training.{name}.flops_per_sec", rates.flops_per_sec, ceiling, "FLOP/s")
                yield from at_most(f"training.{name}.mfu", rates.mfu, MAX_MFU, "MFU")
                yield from at_most(f"training.{name}.mfu_of_measured_peak", rates.mfu_of_measured_peak, MAX_MFU, "MFU")
        for epoch in training.epochs:
            yield from speed(f"training.epochs[{epoch.epoch}].samples_per_sec", epoch.samples_per_sec, train)
            for where, seconds in (("seconds", epoch.seconds), ("train_seconds", epoch.train_seconds)):
                yield from at_most(f"training.epochs[{epoch.epoch}].{where}", seconds, MAX_SECONDS, "s")
        for acc, seconds in training.time_to_val_acc.items():
            yield from at_most(f"training.time_to_val_acc.{acc}", seconds, MAX_SECONDS, "s")
        yield from at_most("training.seconds", training.seconds, MAX_SECONDS, "s")
    if inference is not None:
        yield from speed("inference.samples_per_sec", inference.samples_per_sec, forward)
        yield from at_most("inference.flops_per_sec", inference.flops_per_sec, ceiling, "FLOP/s")
        yield from at_most("inference.latency_ms_p50", inference.latency_ms_p50, MAX_SECONDS * 1e3, "ms")
    if resources is not None:
        per_joule = resources.samples_per_joule
        if per_joule is not None and per_joule * train > MAX_FLOPS_PER_JOULE:
            yield (
                f"resources.samples_per_joule: {per_joule:.3g} samples/J at {train:.3g} FLOPs a sample ({basis}) "
                f"is {per_joule * train:.3g} FLOP/J, more than any device does ({MAX_FLOPS_PER_JOULE:.0e})"
            )
        yield from at_most("resources.average_watts", resources.average_watts, MAX_WATTS * devices, "W")
    yield from at_most("wall_seconds", record.wall_seconds, MAX_SECONDS, "s")
