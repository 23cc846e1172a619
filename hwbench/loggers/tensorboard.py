"""The job's TensorBoard logger (Lightning's, with its writes guarded), and the figures of a finished run.

Per-epoch figures are curves, logged as the epochs finish. A run's own figures (test accuracy, steady and
overall throughput, inference, memory, energy: one value per run) go in three places, each readable in
TensorBoard's default views: the HParams tab (one row per run, one column per figure, beside the knobs and
the hardware), the Scalars tab under ``run/`` (a flat line over the run's steps: a single point draws no
chart there) and the Text tab (``summary``: a table of them all).
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard.writer import FileWriter

from hwbench.loggers.figures import RUN, figure_readers, headline_figures, hparam_values, is_number, run_figures
from hwbench.record.results import ResultsRecord
from hwbench.record.writing import writing

HEADLINE = "Headline/"  # capitalised: TensorBoard sorts groups and Text tags by code point, so it opens on these
SUMMARY = "Summary"  # the Text tab's first, above the fingerprint, cpu_kernels and machine_load

# the HParams table shows the first five columns of each kind at first (the rest are a tick away): the metrics'
# first five are figures.SHOWN_METRICS; its hparams, those marked as differing (the only say a writer has)
SHOWN_HPARAMS = ("arch", "noisy", "hardware", "host", "precision")  # noisy: the caveat beside each run's figures
DATA_TYPES = {bool: api_pb2.DATA_TYPE_BOOL, float: api_pb2.DATA_TYPE_FLOAT64, str: api_pb2.DATA_TYPE_STRING}
BASIS = {"steady": "the steady state (warm-up excluded)", "overall": "all steps (the run had no steady-state window)"}


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
    last optimizer step: where HParams reads a metric), the headline's four under ``Headline/`` (the group
    TensorBoard's Time Series opens first), and the Text tab's table."""
    writer = logger.experiment
    # HParams' own summaries through torch's public FileWriter, in an event file of their own beside the run's
    # (SummaryWriter has no public call that writes a prepared summary)
    events = FileWriter(writer.get_logdir())
    values, figures = hparam_values(cfg, record), run_figures(record)
    started = time.time() - (record.wall_seconds or 0)
    for summary in (experiment(values), session_start(values, started)):
        events.add_summary(summary, 0)
    for name, value in [*((HEADLINE + k, v) for k, v in headline_figures(record).items()),
                        *((RUN + k, v) for k, v in figures.items())]:  # fmt: skip
        for at in (0, step):
            writer.add_scalar(name, value, at)
    writer.add_text(SUMMARY, summary_markdown(record, figures), step)
    events.add_summary(session_end(), step)
    events.close()
