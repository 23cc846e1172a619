"""``execution=fused`` on a CPU: plain SGD's step written out by hand for the net's dense tail, no autograd there.

The dense tail (Flatten, then Linear with its ReLU and Dropout, up to the logits) runs as GEMMs on preallocated
buffers: ``addmm`` forward with the ReLU applied in place, the loss's gradient as softmax minus one-hot in one
pass over the logits, the backward GEMMs with the ReLU and dropout masks applied in place, and each weight updated
by one ``addmm_(grad_out.T, input, alpha=-lr)``: no gradient tensor is stored and no optimizer pass runs over them.
Where the CPU kernel choice put the Linear layers on oneDNN (it measured oneDNN's GEMMs faster on this CPU), the same
three GEMMs run there instead (``cpu_gemms``): the forward with its ReLU fused, the transposed operands passed as
views, each weight's gradient one GEMM added to the weight.
What comes before the tail (the CNN's convolutions) runs through autograd on the kernels the CPU kernel choice
picked, fed the tail's input gradient, and its parameters take the same SGD update. The same math as eager: only
float32's summation order differs (tests/test_cpu_fused.py holds the weights to eager's after many steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hwbench.execution.cpu_gemms import ONEDNN, onednn_available, onednn_linear
from hwbench.execution.strategy import Stepping


@dataclass
class Dense:
    """One of the tail's layers: the Linear, whether a ReLU follows it, and the Dropout after that (if any)."""

    linear: nn.Linear
    relu: bool = False
    dropout: nn.Dropout | None = None


@dataclass
class Plan:
    """The net cut in two: the modules autograd runs (``head``), then the dense tail this step runs by hand."""

    head: list[nn.Module]
    dense: list[Dense]


def plan(net: nn.Module) -> Plan | str:
    """The net's plan, or why it has none: an ``nn.Sequential`` ending in a dense tail (Flatten, then Linear,
    ReLU and Dropout, the last a Linear), no Dropout in place."""
    if not isinstance(net, nn.Sequential):
        return f"a {type(net).__name__} net (it takes an nn.Sequential)"
    layers = list(net)
    start = len(layers)
    while start > 0 and isinstance(layers[start - 1], (nn.Linear, nn.ReLU, nn.Dropout)):
        start -= 1
    if start > 0 and isinstance(layers[start - 1], nn.Flatten):
        start -= 1
    dense: list[Dense] = []
    for layer in layers[start:]:
        if isinstance(layer, nn.Linear) and layer.bias is not None:
            dense.append(Dense(layer))
        elif isinstance(layer, nn.ReLU) and dense and not dense[-1].relu and dense[-1].dropout is None:
            dense[-1].relu = True
        elif isinstance(layer, nn.Dropout) and dense and dense[-1].dropout is None and not layer.inplace:
            dense[-1].dropout = layer
        elif not isinstance(layer, nn.Flatten):
            return f"a {type(layer).__name__} in the net's dense layers"
    if not dense or dense[-1].relu or dense[-1].dropout is not None:
        return "a net that does not end in a Linear layer"
    return Plan(layers[:start], dense)


def uncovered(stepping: Stepping) -> str | None:
    """What of the run's stepping the hand-written step does not do, or None: plain SGD at a fixed rate, float32 or
    bf16-mixed, one process."""
    optimizer = stepping.optimizer
    if type(optimizer) is not torch.optim.SGD:
        return f"{type(optimizer).__name__} (it steps plain SGD)"
    for key, off in (("momentum", 0), ("weight_decay", 0), ("nesterov", False), ("maximize", False)):
        if any(group.get(key, off) != off for group in optimizer.param_groups):
            return f"SGD with {key} (it steps plain SGD)"
    if len(optimizer.param_groups) > 1:
        return "several parameter groups"
    if stepping.scheduler is not None:
        return "an LR scheduler"
    if stepping.scaler is not None:
        return "16-mixed (its GradScaler)"
    if stepping.synced_backward is not None:
        return "DDP (its gradients are all-reduced through autograd)"
    return None


class FusedSgdStep:
    """One SGD step at a time: activations and gradients in buffers allocated once per batch size, so a step
    allocates only its logits and loss (kept for the metrics).

    Under bf16-mixed it does what autocast does in eager: the dense layers' GEMMs, ReLUs and masks in bfloat16 on
    bfloat16 copies of the weights (refreshed each step into buffers), the loss in float32, each weight's gradient a
    bfloat16 GEMM (into a buffer: an ``addmm_`` cannot mix the dtypes) added to the float32 weight; the head runs
    under the run's autocast. In float32 the GEMMs run on the kernel the Linear layers were set to (``onednn``:
    oneDNN's, whose outputs are new tensors, not the buffers)."""

    def __init__(self, plan: Plan, stepping: Stepping, channels_last: bool) -> None:
        self.head = nn.Sequential(*plan.head)
        self.dense = plan.dense
        self.optimizer, self.forward_context = stepping.optimizer, stepping.forward_context
        self.channels_last = channels_last
        self.head_params = [p for p in self.head.parameters() if p.requires_grad]
        self.buffers: dict[int, list[tuple[Tensor, Tensor]]] = {}  # batch size -> per hidden layer (out, grad)
        self.dtype = torch.bfloat16 if stepping.bf16 else torch.float32
        linears = [d.linear for d in self.dense]
        if self.dtype == torch.float32:  # the GEMMs read the weights themselves
            self.weights = [(lin.weight, lin.bias) for lin in linears]
            self.grads: list[Tensor] = []
        else:
            self.weights = [(lin.weight.detach().to(self.dtype), lin.bias.detach().to(self.dtype)) for lin in linears]
            self.grads = [torch.empty_like(lin.weight, dtype=self.dtype) for lin in linears]
        self.onednn = (self.dtype == torch.float32 and onednn_available()
                       and all(getattr(lin, "kernel", None) == ONEDNN for lin in linears))  # fmt: skip

    def _buffers(self, batch: int) -> list[tuple[Tensor, Tensor]]:
        if batch not in self.buffers:
            widths = [d.linear.out_features for d in self.dense[:-1]]
            self.buffers[batch] = [(torch.empty(batch, w, dtype=self.dtype), torch.empty(batch, w, dtype=self.dtype))
                                   for w in widths]  # fmt: skip
        return self.buffers[batch]

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step on the batch; its mean cross-entropy and logits (before the update), as eager's."""
        lr = self.optimizer.param_groups[0]["lr"]
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.grads:  # bf16-mixed: this step's bfloat16 weights, as autocast casts them
            with torch.no_grad():
                for (weight, bias), layer in zip(self.weights, self.dense, strict=True):
                    weight.copy_(layer.linear.weight)
                    bias.copy_(layer.linear.bias)
        with self.forward_context():
            features = self.head(x) if self.head_params else None
        with torch.no_grad():
            h = (self.head(x) if features is None else features.detach()).flatten(1).to(self.dtype)
            inputs, noises = [h], []
            for (weight, bias), layer, (out, _) in zip(self.weights, self.dense, self._buffers(len(x)), strict=False):
                out = self._linear(h, weight, bias, layer.relu, out)
                noise = dropout_noise(layer.dropout, out) if layer.dropout is not None else None
                if noise is not None:
                    out.mul_(noise)
                noises.append(noise)
                h = out
                inputs.append(h)
            weight, bias = self.weights[-1]
            logits = self._linear(h, weight, bias)
            grad, loss = softmax_cross_entropy(logits.float(), y)  # autocast's cross-entropy: in float32
            grad_in = self._backward(grad.to(self.dtype), inputs, noises, lr)
        if features is not None:
            features.backward(grad_in.view_as(features))
            with torch.no_grad():
                torch._foreach_add_(self.head_params, [p.grad for p in self.head_params], alpha=-lr)
            for p in self.head_params:
                p.grad = None
        return loss, logits

    def _linear(self, h: Tensor, weight: Tensor, bias: Tensor, relu: bool = False, out: Tensor | None = None) -> Tensor:
        """``h @ weight.T + bias``, then ReLU: into ``out`` (if given) on torch's BLAS, a new tensor on oneDNN."""
        if self.onednn:
            return onednn_linear(h, weight, bias, relu)
        result = torch.addmm(bias, h, weight.t(), out=out)
        return result.relu_() if relu else result

    def _input_grad(self, grad: Tensor, weight: Tensor, out: Tensor | None) -> Tensor:
        """``grad @ weight``: into ``out`` (if given) on torch's BLAS, a new tensor on oneDNN."""
        if self.onednn:
            return onednn_linear(grad, weight.t())
        return torch.mm(grad, weight, out=out) if out is not None else grad @ weight

    def _backward(self, grad: Tensor, inputs: list[Tensor], noises: list[Tensor | None], lr: float) -> Tensor | None:
        """From the logits' gradient down the tail, each layer's weights updated once its input's gradient (which
        reads them) is taken; the gradient at the tail's input where a head needs it, else None."""
        buffers = self._buffers(len(grad))
        for i in range(len(self.dense) - 1, -1, -1):
            linear, weight = self.dense[i].linear, self.weights[i][0]
            below = None
            if i > 0 or self.head_params:  # the gradient below, which reads the weight before its update
                below = self._input_grad(grad, weight, buffers[i - 1][1] if i > 0 else None)
            if self.grads:  # bf16: the GEMM in bfloat16, added to the float32 weight
                linear.weight.add_(torch.mm(grad.t(), inputs[i], out=self.grads[i]), alpha=-lr)
            elif self.onednn:
                linear.weight.add_(onednn_linear(grad.t(), inputs[i].t()), alpha=-lr)
            else:
                linear.weight.addmm_(grad.t(), inputs[i], alpha=-lr)
            linear.bias.add_(grad.sum(0), alpha=-lr)
            if i > 0:
                assert below is not None
                if noises[i - 1] is not None:
                    below.mul_(noises[i - 1])
                if self.dense[i - 1].relu:  # ReLU's gradient: zero where its output was not positive, in place with
                    # autograd's own kernel (40x faster than masked_fill_ on a comparison's bool tensor, on a Zen 4)
                    torch.ops.aten.threshold_backward.grad_input(below, inputs[i], 0, grad_input=below)
            grad = below  # type: ignore[assignment]
        return grad


def softmax_cross_entropy(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The gradient of the mean cross-entropy in the logits, (softmax - one-hot) / batch, and the loss itself,
    from one log-softmax."""
    log_probs = logits.log_softmax(1)
    picked = log_probs.gather(1, y.view(-1, 1))
    grad = log_probs.exp_()
    grad.scatter_add_(1, y.view(-1, 1), torch.full_like(picked, -1.0))
    grad.div_(len(y))
    return grad, picked.mean().neg()


def dropout_noise(layer: nn.Dropout, x: Tensor) -> Tensor | None:
    """The mask / (1 - p) the layer's training forward multiplies ``x`` by, from the same random stream: the layer's
    own ``noise`` (hwbench's CPU layers, whose kernel draws it) or aten's CPU dropout's; None where it multiplies
    by nothing (p = 0, or not training)."""
    if not layer.training or layer.p == 0:
        return None
    noise = getattr(layer, "noise", None)
    if noise is not None:
        return noise(x)
    return torch.empty_like(x).bernoulli_(1 - layer.p).div_(1 - layer.p) if layer.p < 1 else torch.zeros_like(x)
