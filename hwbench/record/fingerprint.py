"""What machine a result came from: enough to tell two runs' hardware and software apart."""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning
import psutil
import torch

from hwbench.devices import available_cores


def cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (Linux; empty elsewhere)."""
    path, fields = Path("/proc/cpuinfo"), {}
    for line in path.read_text().splitlines() if path.is_file() else ():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    if model := cpuinfo().get("model name"):
        return model
    if sys.platform == "darwin":
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip()
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The widest vector instruction set torch's CPU kernels use on this machine (AVX2, AVX512, ...)."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_description() -> str:
    """The CPU as a table caption names it: model, vendor's family and model numbers (x86), ISA."""
    fields = cpuinfo()
    family = " ".join(f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields)
    vendor = f"{fields.get('vendor_id', '')} {family}".strip()
    return f"{cpu_model()} ({vendor + ', ' if vendor else ''}{cpu_isa()})"


def nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
    )
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else None


def gpus() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    return [
        {"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1), "capability": f"{p.major}.{p.minor}"}
        for p in map(torch.cuda.get_device_properties, range(torch.cuda.device_count()))
    ]


def fingerprint(threads: int, precision: str, accelerator: str) -> dict[str, Any]:
    """Host, CPU, GPUs and the software stack, as plain JSON-able values."""
    cuda = torch.cuda.is_available()
    return {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "usable_cores": available_cores(),
        "threads": threads,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "accelerator": accelerator,
        "gpus": gpus(),
        "driver": nvidia_driver(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "precision": precision,
    }


def as_markdown(fp: dict[str, Any]) -> str:
    """A two-column table, for TensorBoard's text tab."""
    rows = "\n".join(f"| {key} | {value} |" for key, value in fp.items())
    return f"| field | value |\n|---|---|\n{rows}"
