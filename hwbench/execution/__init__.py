"""How a training step executes, one strategy per ``execution=`` option (config group ``execution``).

``eager``: kernels launched from Python, a step at a time. ``compiled``: the same loop over a ``torch.compile``d
net. ``graph``: each optimizer step captured in a CUDA graph and replayed. ``fused``: Inductor-fused steps with
a fused optimizer, a whole group of them captured in one CUDA graph; on a CPU, plain SGD's step written out by hand
for the dense layers. ``auto``: on a CPU, eager or fused, whichever is faster on this machine (measured).
"""

from hwbench.execution.auto import Auto
from hwbench.execution.eager import Compiled, Eager
from hwbench.execution.fused import Fused
from hwbench.execution.graph import Graph
from hwbench.execution.prepare import PrepareExecution
from hwbench.execution.strategy import Execution, Stepping, Trainee

__all__ = ["Auto", "Compiled", "Eager", "Execution", "Fused", "Graph", "PrepareExecution", "Stepping", "Trainee"]
