"""How a training step executes, one strategy per ``execution=`` option (config group ``execution``).

``eager``: kernels launched from Python, a step at a time. ``compiled``: the same loop over a ``torch.compile``d
net. ``graph``: each optimizer step captured in a CUDA graph and replayed. ``fused``: Inductor-fused steps with
a fused optimizer, a whole group of them captured in one CUDA graph.
"""

from hwbench.execution.eager import Compiled, Eager
from hwbench.execution.fused import Fused
from hwbench.execution.graph import Graph
from hwbench.execution.prepare import PrepareExecution
from hwbench.execution.strategy import Execution, Stepping, Trainee

__all__ = ["Compiled", "Eager", "Execution", "Fused", "Graph", "PrepareExecution", "Stepping", "Trainee"]
