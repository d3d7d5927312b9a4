"""Checkpoints: safetensors tensors + JSON metadata in one file, written atomically.

Never pickle: a checkpoint is tensors plus a JSON string (config, step, ...)
stored in the safetensors header, so one file is self-describing and one
os.replace makes it appear whole or not at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import stat
import typing
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

FORMAT_VERSION = 1


# ---------------------------------------------------------------- configs <-> JSON
def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: dict) -> Any:
    """Rebuild a (nested, frozen) dataclass from `to_jsonable` output; unknown keys are an error.

    A field added after checkpoints were written takes, when the stored config
    lacks it, the value in the class's `ABSENT_FIELD_VALUES` (the one that
    rebuilds the network those checkpoints were trained with), not its default
    (which is what new models get). A field in `DROPPED_FIELDS` (removed
    because it was never read) is ignored.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    # Fields removed because nothing ever read them (DROPPED_FIELDS): ignored in old configs.
    data = {k: v for k, v in data.items() if k not in getattr(cls, "DROPPED_FIELDS", ())}
    unknown = set(data) - names
    if unknown:
        raise CheckpointError(f"config for {cls.__name__} has unknown fields {sorted(unknown)}")
    kwargs = {k: v for k, v in getattr(cls, "ABSENT_FIELD_VALUES", {}).items() if k not in data}
    for name, value in data.items():
        tp = hints[name]
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            value = from_dict(tp, value)
        elif origin is tuple or (origin is typing.Union and any(typing.get_origin(a) is tuple for a in typing.get_args(tp))):
            value = tuple(value) if value is not None else None
        kwargs[name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------- files
def atomic_write_bytes(path: Path, write) -> None:
    """Call write(tmp_path), then rename onto path: readers never see half a file.

    The file gets the mode any new file of the user's gets (0o666 less the
    umask), as records, run.json, leaderboards, cache entries and checkpoints
    live in folders people share. (tempfile.mkstemp would make every one 0600.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"))
    # O_EXCL: never another writer's temp file; the kernel applies the umask to 0o666, as for open(path, "w").
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        mode = stat.S_IMODE(os.stat(tmp).st_mode)  # the umask's verdict, read without changing the process umask
        write(tmp)
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:  # safetensors' save_file recreates the file as 0600
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write_bytes(path, write)


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {"format_version": str(FORMAT_VERSION), "meta": json.dumps(meta, sort_keys=True)}
    atomic_write_bytes(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        meta = json.loads(header["meta"])
    except (SafetensorError, KeyError, ValueError, OSError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: {type(e).__name__}: {e}") from None
    return tensors, meta


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(module: torch.nn.Module, prefix: bytes = b"") -> str:
    """sha256 of prefix + every (name, tensor bytes) of a module's state dict, names sorted."""
    h = hashlib.sha256(prefix)
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under 'prefix.' with the prefix stripped."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict that reports a mismatch as one CheckpointError line."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if shapes:
            k = shapes[0]
            parts.append(f"shape of {k}: checkpoint {tuple(state[k].shape)} vs config {tuple(own[k].shape)}")
        raise CheckpointError(f"{what} does not match its config: " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            tensors[f"{idx}.{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
    return tensors, sd["param_groups"]


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": groups})
