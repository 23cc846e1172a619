"""The job's TensorBoard logger (Lightning's, with its writes guarded), and the figures of a finished run.

Per-epoch figures are curves, logged as the epochs finish. A run's own figures (test accuracy, steady and
overall throughput, inference, memory, energy: one value per run) go in three places, each readable in
TensorBoard's default views: the HParams tab (one row per run, one column per figure, beside the knobs and
the hardware), the Scalars tab under ``run/`` (a flat line over the run's steps: a single point draws no
chart there) and the Text tab (``summary``: a table of them all).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from hwbench.measure.training_summary import ACCURACY_TARGETS
from hwbench.record.parts import Inference, Metrics, Part, Rates, Resources
from hwbench.record.results import ResultsRecord
from hwbench.record.writing import writing

RUN = "run/"  # the Scalars tab's section of the run's figures, and the HParams metrics' tags
# the HParams table shows the first five columns of each kind at first (the rest are a tick away): the
# metrics' first five are these; its hparams, those marked as differing (the only say a writer has)
SHOWN_METRICS = ("train_samples_per_sec", "test_acc", "seconds_to_val_acc_0.97", "inference_samples_per_sec",
                 "inference_latency_ms_p50")  # fmt: skip
SHOWN_HPARAMS = ("arch", "hardware", "host", "precision", "threads")
Reader = Callable[[ResultsRecord], Any]
DATA_TYPES = {bool: api_pb2.DATA_TYPE_BOOL, float: api_pb2.DATA_TYPE_FLOAT64, str: api_pb2.DATA_TYPE_STRING}
BASIS = {"steady": "the steady state (warm-up excluded)", "overall": "all steps (the run had no steady-state window)"}
# record parts whose every number is a run's figure, under a prefix (the inference's batch size is a setting)
PARTS: tuple[tuple[str, Reader, type[Part], tuple[str, ...]], ...] = (
    ("", lambda r: r.metrics, Metrics, ()),
    ("steady_", lambda r: r.training and r.training.steady, Rates, ()),
    ("overall_", lambda r: r.training and r.training.overall, Rates, ()),
    ("inference_", lambda r: r.inference, Inference, ("batch_size",)),
    ("", lambda r: r.resources, Resources, ()),
)


class JobLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, whose failures to write (a full disk) name the folder: every method that
    writes, Lightning's calls included, raises :class:`OutputUnwritable`."""

    @property
    def experiment(self) -> Any:  # creating the writer creates its event file
        with writing(self.log_dir):
            return super().experiment

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        with writing(self.log_dir):
            super().log_metrics(metrics, step)

    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None) -> None:
        with writing(self.log_dir):
            super().log_hyperparams(params, metrics)

    def save(self) -> None:
        with writing(self.log_dir):
            super().save()

    def finalize(self, status: str) -> None:
        with writing(self.log_dir):
            super().finalize(status)


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


def run_figures(record: ResultsRecord) -> dict[str, float]:
    """The figures this run has, by name (a CPU run has no GPU memory; a 1-epoch run no steady state)."""
    values = {name: read(record) for name, read in figure_readers().items()}
    return {name: float(v) for name, v in values.items() if is_number(v)}


def hparam_values(cfg: DictConfig, record: ResultsRecord) -> dict[str, str | float | bool]:
    """The HParams row's knobs and hardware, typed as the dashboard shows them: booleans as booleans; integers
    as their digits (it prints every number to five digits: 128 would read 128.00); the learning rate a number."""
    fp = record.fingerprint
    params = {
        "arch": cfg.arch.name, "data": cfg.data._target_.rsplit(".", 1)[-1],
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


def hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
    """One of the HParams plugin's records, as its own summary writers build them."""
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def experiment(values: dict[str, str | float | bool]) -> summary_pb2.Summary:
    """The HParams tab's columns and their types, written by every run (the dashboard reads one run's)."""
    hparams = []
    for name, value in values.items():
        kind = bool if isinstance(value, bool) else type(value)
        info = api_pb2.HParamInfo(name=name, type=DATA_TYPES[kind], differs=name in SHOWN_HPARAMS)
        if kind is bool:  # its filter's choices: every value a boolean has
            info.domain_discrete.extend([False, True])
        hparams.append(info)
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=RUN + name), display_name=name)
               for name in figure_readers()]  # fmt: skip
    data = plugin_data_pb2.HParamsPluginData(experiment=api_pb2.Experiment(hparam_infos=hparams, metric_infos=metrics))
    return hparams_summary(metadata.EXPERIMENT_TAG, data)


def session_start(values: dict[str, str | float | bool], started: float) -> summary_pb2.Summary:
    """This run's row: its values. No group name: TensorBoard then gives each run a row of its own."""
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=started)
    for name, value in values.items():
        field = "bool_value" if isinstance(value, bool) else "number_value" if is_number(value) else "string_value"
        setattr(info.hparams[name], field, value)
    return hparams_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end() -> summary_pb2.Summary:
    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return hparams_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def summary_markdown(record: ResultsRecord, figures: dict[str, float]) -> str:
    """The Text tab's ``summary``: every figure of the run in one table, under the run's closing line."""
    rows = "\n".join(f"| {RUN}{name} | {shown(value)} |" for name, value in figures.items())
    basis = f"{RUN}train_samples_per_sec: {BASIS.get(record.train_basis or '', 'none')}"
    return f"{record.summary()}\n\n{basis}\n\n| figure | value |\n|---|---|\n{rows}"


def shown(value: float) -> str:
    """24,438 samples/s; 0.9224; 2.1e+10 FLOP/s (not eleven digits)."""
    return f"{value:,.0f}" if 1000 <= abs(value) < 1e6 or value.is_integer() else f"{value:.4g}"


def log_run(logger: TensorBoardLogger, cfg: DictConfig, record: ResultsRecord, step: int) -> None:
    """A finished run's figures: its HParams row, a flat line each under ``run/`` from step 0 to ``step`` (the
    last optimizer step: where HParams reads a metric), and the Text tab's table."""
    writer = logger.experiment
    # the writer's own file writer, reopened: Lightning closed it when the test ended (torch has no public
    # call that writes a prepared summary)
    events = writer._get_file_writer()
    values, figures = hparam_values(cfg, record), run_figures(record)
    started = time.time() - (record.wall_seconds or 0)
    for summary in (experiment(values), session_start(values, started)):
        events.add_summary(summary, 0)
    for name, value in figures.items():
        for at in (0, step):
            writer.add_scalar(RUN + name, value, at)
    writer.add_text("summary", summary_markdown(record, figures), step)
    events.add_summary(session_end(), step)
