"""One job: build everything from the config, train, test, and write the results record."""

from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from hwbench.devices import configure_torch, keep_freed_host_memory, quiet_blas_threads, resolve_accelerator
from hwbench.errors import DeviceUnavailable, HwbenchError, Interrupted, OutputUnwritable, one_line
from hwbench.execution import Execution
from hwbench.job.build import Measurements, build_model, build_net, distributed, make_trainer
from hwbench.job.config import check, check_precision, world_size
from hwbench.launch import slurm, torchrun
from hwbench.launch.ddp import RankWatch, job_scope, process_rank
from hwbench.launch.external_ranks import refuse_lone_node
from hwbench.launch.process import job_process, process_part
from hwbench.launch.signals import StopSignals, signals_raise_interrupted, stop_signals_blocked
from hwbench.loggers.chosen import job_loggers, tensorboard_of, trackers_of
from hwbench.loggers.tensorboard import log_run
from hwbench.measure.stability import group_plan
from hwbench.record.fingerprint import as_markdown, fingerprint
from hwbench.record.machine import Fingerprint
from hwbench.record.parts import Interruption, Phases, Training
from hwbench.record.results import ResultsRecord, now, refuse_taken, write_record
from hwbench.record.writing import writing


def run(cfg: DictConfig, out_dir: Path, shared: str | None = None) -> ResultsRecord:
    """Train and test one configuration and write its results record, whatever happens.

    Returns the record (ok, skipped, failed or diverged); raises ``Interrupted`` after recording what
    finished, and ``OutputFolderTaken`` before writing anything. Only rank 0 writes (the other ranks of a
    DDP job share its folder). ``shared``: why the job runs in a process it shares (python -m hwbench gives it
    a fresh one; called directly, it runs in its caller's).
    """
    with job_scope(distributed(cfg), own_process=job_process() is not None) as ranks:
        return Job(cfg, out_dir, writes=process_rank() == 0, ranks=ranks, shared=shared).run()


class Job:
    """One job: build, fit, test, then the record, assembled from the parts its measuring callbacks return
    (whatever was built before a failure or a signal still gives its part)."""

    def __init__(
        self, cfg: DictConfig, out_dir: Path, writes: bool, ranks: RankWatch | None = None, shared: str | None = None
    ) -> None:
        self.cfg, self.out_dir, self.writes, self.ranks, self.shared = cfg, out_dir, writes, ranks, shared
        self.measuring: Measurements | None = None
        self.loggers: list[Logger] = []  # the config's choice (the logger group): TensorBoard first
        self.trainer: L.Trainer | None = None
        self.stop: StopSignals | None = None  # the job's own, while it runs
        self.test_seconds = 0.0

    def run(self) -> ResultsRecord:
        start = time.perf_counter()
        with signals_raise_interrupted() as stop:  # from the first write to the last: no signal cuts a record short
            self.stop = stop
            if self.writes:
                refuse_taken(self.out_dir)
            record = ResultsRecord.start(self.cfg)
            record.job = process_part(self.shared)
            try:
                if self.writes:  # claims the folder; a killed job leaves "running", never nothing
                    write_record(self.out_dir, record)
                self.train_and_test(record)
            except DeviceUnavailable as err:
                record.status, record.reason = "skipped", str(err)
            except OutputUnwritable as err:  # raised again once the record has had its try
                record.status, record.reason = "failed", str(err)
                raise
            except HwbenchError as err:
                record.status, record.reason = "failed", str(err)
            except Interrupted as err:
                self.record_interruption(record, err)
                raise
            except Exception as err:  # unexpected: the record keeps the traceback, the screen gets one line
                if (stopped := self.stopped_with_peers()) is not None:
                    self.record_interruption(record, stopped)
                    raise stopped from err
                self.keep_finished_epochs()
                record.status, record.reason = "failed", self.rank_death() or f"{type(err).__name__}: {one_line(err)}"
                record.traceback = traceback.format_exc()
            finally:
                with stop.held():  # a signal now is raised once the record is on disk
                    self.finish(record, start)
        return record

    def record_interruption(self, record: ResultsRecord, err: Interrupted) -> None:
        """What finished before the signal: the epochs (their figures marked partial when training was cut
        short), and the test's figures when the signal came in the inference timing after it."""
        record.status = "interrupted"
        m, where = self.measuring, ""
        if m is not None and m.summary.training is not None:  # training had finished
            where = ", in the test" if m.test.metrics is None else ", in the inference timing (tested)"
        else:
            self.keep_finished_epochs()
        epochs, steps = (len(m.epochs.epochs), m.clock.steps) if m else (0, 0)
        record.reason = f"{err.signal_name} after {epochs} epoch(s){where}"
        record.interruption = Interruption(signal=err.signal_name, epochs_finished=epochs, steps_finished=steps)

    def keep_finished_epochs(self) -> None:
        """Training was cut short: its figures over the epochs that finished, marked partial."""
        m = self.measuring
        if m is not None:  # no rank waits for the others now: a stopped or dead rank never comes (DDP deadlocks)
            m.clock.barrier = None
        if m is not None and m.summary.training is None and self.trainer is not None:
            m.summary.summarize(self.trainer, self.trainer.lightning_module, partial=True)

    def stopped_with_peers(self, wait: float = 2.0) -> Interrupted | None:
        """The stop signal a DDP job's failure came with: SLURM and torchrun signal every rank, and one that stops
        first closes its connections under the others (gloo's "Connection closed by peer"), often before this
        rank's own signal is handled. Waited for ``wait`` seconds, held (recorded here, not raised mid-wait)."""
        stop = self.stop
        if stop is None or not distributed(self.cfg):
            return None
        stop.holding, deadline = True, time.monotonic() + wait
        try:
            while stop.first is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.holding = False
        if stop.first is None:
            return None
        stop.pending = False
        return Interrupted(stop.first)

    def rank_death(self) -> str | None:
        """'rank 1 was killed by SIGKILL after 1 epoch(s) (its log: ...)' where a DDP rank has died."""
        death = self.ranks.death(wait=2.0) if self.ranks is not None else None
        return death.line(len(self.measuring.epochs.epochs) if self.measuring else 0) if death else None

    def save_progress(self, record: ResultsRecord) -> None:
        """After each epoch, off the clock: the record so far, so that a job whose process dies keeps its finished
        epochs (hwbench.launch.process marks it failed)."""
        if self.writes and (m := self.measuring) is not None:
            seconds = m.clock.finished.seconds if m.clock.finished else None
            record.training = Training(seconds=seconds, epochs=list(m.epochs.epochs), partial=True)
            with self.stop.held() if self.stop else contextlib.nullcontext():
                write_record(self.out_dir, record)

    def finish(self, record: ResultsRecord, start: float) -> None:
        """The record from every part measured, on disk; then TensorBoard's last figures, flushed; then the record
        again with the writing's time (the first write keeps the record safe from a logger that hangs)."""
        self.assemble(record)
        writing_from = time.perf_counter()
        record.finished, record.wall_seconds = now(), writing_from - start
        try:
            if self.writes:
                write_record(self.out_dir, record)  # on failure the last record written stays
        finally:
            self.close_loggers(record)
        if self.writes:
            record.phases = self.phases(record.wall_seconds, time.perf_counter() - writing_from)
            write_record(self.out_dir, record)

    def phases(self, wall: float, write: float) -> Phases:
        train = self.measuring.span.seconds if self.measuring else 0.0
        prepare = max(0.0, wall - train - self.test_seconds)
        return Phases(prepare=prepare, train=train, test=self.test_seconds, write=write)

    def assemble(self, record: ResultsRecord) -> None:
        """Each measuring callback's parts into the record, validated on assignment: a wrong name or type fails."""
        for name, part in (self.measuring.record_parts() if self.measuring else {}).items():
            setattr(record, name, part)

    def set_up(self, record: ResultsRecord) -> tuple[Execution, str]:
        """The config checked, the strategy and device chosen (or refused), torch set up; the fingerprint."""
        cfg = self.cfg
        check(cfg)
        execution: Execution = instantiate(cfg.execution)
        record.execution = execution.part()
        accelerator = resolve_accelerator(cfg.device.accelerator)
        check_precision(cfg, accelerator)
        execution.refuse(cfg, accelerator)
        need_gpus(accelerator, cfg.device.devices)  # before any rank starts
        refuse_lone_node(cfg)
        for launcher in (slurm, torchrun):  # the ranks SLURM or torchrun started, against the config's
            launcher.refuse_mismatch(cfg, world_size(cfg))
        threads = configure_torch(cfg.device)
        quiet_blas_threads()
        keep_freed_host_memory()
        record.fingerprint = Fingerprint(**fingerprint(threads, str(cfg.device.precision), accelerator))
        return execution, accelerator

    def train_and_test(self, record: ResultsRecord) -> None:
        cfg = self.cfg
        execution, accelerator = self.set_up(record)
        L.seed_everything(cfg.seed, verbose=False)
        net = build_net(cfg, execution)
        model, data = build_model(cfg, net, execution), instantiate(cfg.data)
        data.plan_groups(*group_plan(cfg.epochs, cfg.warmup_steps))  # the clock's steady sub-windows
        self.measuring = measuring = Measurements.of(cfg, net, data, execution, self.stop,
                                                      epoch_closed=lambda: self.save_progress(record))  # fmt: skip
        self.loggers = job_loggers(cfg, self.out_dir, trackers=self.writes)
        if (board := tensorboard_of(self.loggers)) is not None:
            with writing(self.out_dir):
                board.experiment.add_text("fingerprint", as_markdown(record.fingerprint.model_dump()))
        for tracker in trackers_of(self.loggers):
            tracker.log_start(cfg, record)
        self.start_ranks()
        self.trainer = trainer = make_trainer(cfg, accelerator, self.loggers, measuring.callbacks(self.stop))
        trainer.fit(model, datamodule=data)
        record.strategy = type(trainer.strategy).__name__
        record.backend = getattr(trainer.strategy, "process_group_backend", None)
        if model.diverged_epoch is not None:
            record.status, record.diverged_epoch = "diverged", model.diverged_epoch
            record.reason = (
                f"the training loss is not finite in epoch {model.diverged_epoch}: training stopped there; "
                f"lower the learning rate (lr={cfg.lr})"
            )
            return
        testing_from = time.perf_counter()
        trainer.test(model, datamodule=data, verbose=False)
        self.test_seconds = time.perf_counter() - testing_from
        self.assemble(record)  # the test's figures and the inference timing
        record.status = "ok"

    def start_ranks(self) -> None:
        """A DDP job's other ranks on this node, started here before the Trainer (hwbench.launch.ddp): Lightning
        takes them as started externally. Each stop signal this job takes goes on to them; one that comes while
        they start is held until it can."""
        if self.ranks is None or self.stop is None:  # not DDP, or started by torchrun or SLURM
            return
        with stop_signals_blocked():  # they start with the stop signals blocked, and take them once they can
            try:
                self.ranks.launch(self.cfg.device.devices, self.cfg.device.nodes)
            finally:
                self.stop.pass_on_to(self.ranks.send_signal)

    def close_loggers(self, record: ResultsRecord) -> None:
        """The run's own figures in each logger, then its end: the trackers first (they never raise), then
        TensorBoard (hwbench/loggers/tensorboard.py), whose event file is flushed."""
        step = self.measuring.clock.steps if self.measuring else 0
        for tracker in trackers_of(self.loggers):
            tracker.log_end(record, step)
        if (board := tensorboard_of(self.loggers)) is None:
            return
        if record.status == "ok" and self.writes:
            with writing(self.out_dir):
                log_run(board, self.cfg, record, step)
        board.finalize("success" if record.status == "ok" else "failed")


def need_gpus(accelerator: str, devices: int) -> None:
    """A job asking for more GPUs than the machine has is skipped (counted without a CUDA context)."""
    present = torch.cuda.device_count() if accelerator == "cuda" else devices
    if devices > present:
        raise DeviceUnavailable(f"device.devices={devices} but this machine has {present} CUDA GPU(s)")
