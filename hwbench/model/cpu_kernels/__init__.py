"""CPU layers with more than one way to run the same math, and the choice between those ways by measurement.

``layers``: ``nn.Linear``, ``nn.Conv2d`` and ``nn.Dropout`` whose ``kernel`` attribute picks how they run on a
CPU (torch's own kernel by default). ``autotune``: times the candidates on the run's own shapes before
training, takes the fastest of each kind, and reports what it chose and why.
"""

from hwbench.model.cpu_kernels.layers import Conv2d, Dropout, KernelLayer, Linear, keep_mask

__all__ = ["Conv2d", "Dropout", "KernelLayer", "Linear", "keep_mask"]
