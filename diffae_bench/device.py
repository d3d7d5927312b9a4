"""Device selection: CUDA when present ("auto"), or what the user names."""

from __future__ import annotations

import torch

from .errors import BenchError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device '{name}' requested but CUDA is not available here; use --device cpu")
    return dev


def describe_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    import platform

    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
