"""CUDA events around CUDA-graph replays: how long the GPU ran them, read without a profiler (which would
corrupt the replays, pytorch/pytorch#75504). The graph strategies replay through it; the GPU-busy probe reads it."""

from __future__ import annotations

import torch


class ReplayTimer:
    """CUDA events around CUDA-graph replays, recorded while armed: the GPU's time inside the replays.

    A replay runs its kernels back to back, so its event pair spans GPU work only; the gaps between replays
    (the host's copies and Python) count as idle. Events touch nothing inside the graph, unlike a profiler.
    """

    def __init__(self) -> None:
        self.armed = False
        self.pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def replay(self, graph: torch.cuda.CUDAGraph) -> None:
        if not self.armed:
            graph.replay()
            return
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        self.pairs.append((start, end))

    def seconds(self) -> float:
        """The replays' GPU time since arming (call after synchronizing the device); disarms."""
        seconds = sum(start.elapsed_time(end) for start, end in self.pairs) / 1e3
        self.armed, self.pairs = False, []
        return seconds
