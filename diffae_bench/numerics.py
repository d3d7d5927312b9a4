"""Numeric modes: how the networks run, per path, without changing what a number means.

A mode says how NETWORK forward passes run; the diffusion arithmetic (alphas,
x_t updates, x0 clipping) always stays float32 because the sampler casts eps
back to x's dtype (diffusion._x0_and_eps) and autocast leaves elementwise
float32 arithmetic alone. Modes:

  fp32      eager float32: the reference every other mode is checked against
  fp32-cl   float32, channels_last weights and inputs (another conv algorithm)
  bf16      torch.autocast(bfloat16) around the network call
  bf16-cl   both

Paths: train (the loss in `bench train`), decode (sampling / decoding),
invert (the stochastic encoder), encode (z_sem and probe representations).
`apply_numeric_modes(model, modes)` wraps a model's interface methods, so it
works for any DiffusionAutoencoder (plugins too) and tasks never see it.

A faster mode becomes a path's default only where `bench perf --accuracy`
showed that path's metrics within tolerance of fp32 (TOLERANCES) and `bench
perf` showed it faster (APPROVED), on CUDA only: a CPU default must not
depend on the CPU kind (AVX2-only machines run bf16 20-60x slower on reference
kernels, AVX-512-BF16 ones natively), so every CPU defaults to fp32
(`default_modes`). `numerics_fingerprint` names what else decides a number's
exact bits (device, CPU kernel family, oneMKL's code path, numpy's BLAS kernels,
torch's CPU thread count, torch): records carry it, and exact reproduction is only
expected between runs with the same fingerprint (`pinned_threads` fixes the count).
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, fields

import torch

from .errors import BenchError


@dataclass(frozen=True)
class NumericMode:
    name: str  # registry name, recorded with every number
    autocast_dtype: torch.dtype | None  # None: no autocast (float32 networks)
    channels_last: bool  # weights and image inputs in channels_last memory format


MODES = {m.name: m for m in (
    NumericMode("fp32", None, False),
    NumericMode("fp32-cl", None, True),
    NumericMode("bf16", torch.bfloat16, False),
    NumericMode("bf16-cl", torch.bfloat16, True),
)}
PATHS = ("train", "decode", "invert", "encode")

# Metric tolerances a mode must meet against fp32 to be a path's default (issue 7).
# The train path (issue 21): on the same batches, t and noise, the loss within 1 % of fp32's and the
# gradient's direction within cosine 0.99 (a step-level check; paired training runs are the full one).
TOLERANCES = {"ssim_abs": 0.002, "mse_rel": 0.02, "auroc_abs": 0.005, "train_loss_rel": 0.01, "train_grad_cos": 0.99}


def get_mode(name: str) -> NumericMode:
    if name not in MODES:
        raise BenchError(f"unknown numeric mode '{name}'; use one of {', '.join(MODES)}")
    return MODES[name]


@dataclass(frozen=True)
class PathModes:
    """The numeric mode of each path (what `bench run` records as numeric_mode)."""

    train: str = "fp32"  # bench train's loss
    decode: str = "fp32"  # DDIM sampling / decoding
    invert: str = "fp32"  # DDIM inversion (the stochastic encoder): error compounds over T steps
    encode: str = "fp32"  # semantic encoder (codes, probe representations)

    def __post_init__(self):
        for f in fields(self):
            get_mode(getattr(self, f.name))

    def describe(self, paths: tuple[str, ...] = ("decode", "invert", "encode")) -> str:
        """One name when the paths agree ("fp32"), else "decode=bf16,invert=fp32,encode=fp32"."""
        names = [getattr(self, p) for p in paths]
        return names[0] if len(set(names)) == 1 else ",".join(f"{p}={n}" for p, n in zip(paths, names))


# The defaults, one place. A mode is a path's default only if it PASSED
# `bench perf --accuracy` AND `bench perf` showed it faster there. Measured
# 2026-11-25 (tiny Diff-AE trained 300 steps on shapes at 16 px; 64 test
# images, T = 10 and 20; probes on 256 / 128 images; deltas against fp32):
#   bf16    decode |dSSIM| 0.0017, |dMSE| 0.5 %; invert 0.0006, 0.2 %; encode |dAUROC| 0.0032: PASS
#   fp32-cl decode/invert |dSSIM| 0.0001, |dMSE| < 0.1 %; encode |dAUROC| 0.0001: PASS
# Speed (ratio to eager fp32, `bench perf`):
#   H200, batch 128-256: bf16 sampling 1.21-1.24x (tiny, small, paper64) -> decode = bf16;
#     bf16 inversion 0.82-1.02x and encoding untimed (one pass an image) -> fp32 there;
#     training 0.78-1.09x -> fp32 (and not accuracy-checked: that needs paired runs).
#   this AVX2-only CPU: bf16 is 20-60x SLOWER (no native bf16), fp32-cl 0.85-0.95x: nothing
#     beats eager fp32. CPUs with native bf16 could be faster in bf16, but a CPU default
#     must not depend on the CPU kind (issue 13), so default_modes() is fp32 on every CPU.
APPROVED = PathModes(train="fp32", decode="bf16", invert="fp32", encode="fp32")


def native_bf16(device: torch.device | str) -> bool:
    """True where bfloat16 kernels are native (fast): CUDA with bf16, CPUs with AVX-512-BF16 / AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def runs_natively(mode: str, device: torch.device | str) -> bool:
    return get_mode(mode).autocast_dtype is None or native_bf16(device)


def default_modes(device: torch.device | str) -> PathModes:
    """APPROVED on CUDA (where it was measured and accuracy-checked); fp32 on every path on a CPU.

    A CPU default must not depend on the CPU kind: a record made with defaults
    on an AVX-512-BF16 machine has to mean the same as one made on an AVX2-only
    machine, and the gate refuses rows of different numeric modes. So CPUs run
    fp32 by default whatever they support; bf16 on a CPU is an explicit choice
    (`--numeric-mode bf16`) and is recorded as such.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return PathModes()
    return PathModes(**{f.name: (m if runs_natively(m, device) else "fp32")
                        for f in fields(APPROVED) for m in [getattr(APPROVED, f.name)]})


def cpu_capability() -> str:
    """The CPU kernel family ATen dispatches to ("AVX512", "AVX2", "DEFAULT"; honours ATEN_CPU_CAPABILITY)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # older torch without the query
        return "unknown"


def is_x86() -> bool:
    """An x86-64 CPU: where OpenBLAS's core types and oneMKL's code paths exist."""
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().split("\n\n", 1)[0].splitlines()
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def cpu_vendor() -> str:
    """"intel", "amd" or "other": the x86 vendor, which oneMKL dispatches on besides the instruction set."""
    import platform

    text = _cpuinfo().get("vendor_id") or platform.processor()
    return "intel" if "Intel" in text else "amd" if "AMD" in text else "other"


@functools.lru_cache(maxsize=1)
def mkl_branch() -> str | None:
    """Which code path torch's CPU matrix products (oneMKL's SGEMM) take: "mkl-amd", "mkl-intel-AVX512", ...

    oneMKL picks its kernels by vendor as well as by instruction set: on AMD CPUs it runs its
    generic path whatever the ISA (MKL_ENABLE_INSTRUCTIONS changes no bit there, measured in
    session 7), on Intel ones the path of the ISA, capped by MKL_ENABLE_INSTRUCTIONS. Measured
    2026-11-27 on an AMD EPYC: changing only that path (MKL_CBWR=COMPATIBLE) moved 6 of the
    reference subset's 217 shapes values beyond the exact gate's 1e-4 (few-label AUROCs and small
    z_usage gaps), so machines that ATen and OpenBLAS both call "AVX512 / SkylakeX" but whose MKL
    runs other kernels must not share an exact baseline. None without MKL (e.g. Arm builds).
    """
    if not torch.backends.mkl.is_available() or not is_x86():
        return None
    vendor = cpu_vendor()
    if vendor != "intel":
        return f"mkl-{vendor}"
    flags = set(_cpuinfo().get("flags", "").split())
    level = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").upper() or (
        "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE")
    return f"mkl-intel-{level}"


@functools.lru_cache(maxsize=1)
def blas_kernels() -> str:
    """numpy's BLAS and the kernel family it dispatched to at load time: "openblas-SkylakeX" (honours OPENBLAS_CORETYPE).

    OpenBLAS picks its kernels by CPU model, not by ATen's kernel family: two AVX-512 EPYC
    machines of this project, both "AVX512" to ATen, ran the reference subset's probes with
    different OpenBLAS kernels (Haswell and SkylakeX), and a few-label AUROC differed by 3e-4.
    """
    try:
        import numpy.linalg  # noqa: F401  (loads numpy's BLAS, so threadpoolctl sees it)
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    blas = sorted((i for i in threadpool_info() if i.get("user_api") == "blas"),
                  key=lambda i: "numpy" not in str(i.get("filepath", "")))  # numpy's own first (scipy may ship another)
    if not blas:
        return "unknown"
    return f"{blas[0].get('internal_api')}-{blas[0].get('architecture') or 'unknown'}"


def numerics_fingerprint(device: torch.device | str, numeric_mode: str) -> dict:
    """What decides the exact bits of a number besides code and data (issue 13).

    Two runs with the same fingerprint (and the same code, data, model and
    seed) reproduce each other to float noise; runs with different
    fingerprints (another CPU kernel family, a GPU, another torch) agree only
    statistically, within the gate's CIs and tolerances.
    """
    device = torch.device(device)
    fp = {"device_type": device.type,
          "cpu_capability": cpu_capability() if device.type == "cpu" else None,
          "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
          "mkl": mkl_branch() if device.type == "cpu" else None,  # torch's CPU matrix products
          "blas": blas_kernels(),  # the probes, Frechet distances and other numpy / scipy linear algebra
          # torch's CPU intra-op threads: oneDNN and oneMKL split a batch's work by thread, so the bits
          # depend on the count (measured 2026-11-27: the reference subset moved on 3 threads, see cpu_threads)
          "threads": cpu_threads() if device.type == "cpu" else None,
          "torch": torch.__version__,
          "numeric_mode": numeric_mode}
    fp["id"] = fingerprint_id(fp)
    return fp


def fingerprint_id(fp: dict) -> str:
    """A short readable id of a numerics fingerprint: "cpu-AVX512-mkl-amd-openblas-SkylakeX-2threads-torch2.14.1-fp32".

    Older records keep the id they were made with: without the threads before 2026-11-27 (session 9),
    without "mkl-..." before session 8, without the BLAS too before session 7 ("cpu-AVX512-torch2.14.1-fp32").
    """
    kind = fp["cpu_capability"] if fp["device_type"] == "cpu" else (fp.get("cuda_device") or "").replace(" ", "_")
    mkl = f"-{fp['mkl']}" if fp.get("mkl") else ""
    blas = f"-{fp['blas']}" if fp.get("blas") else ""
    threads = f"-{fp['threads']}threads" if fp.get("threads") else ""
    return f"{fp['device_type']}-{kind}{mkl}{blas}{threads}-torch{fp['torch'].split('+')[0]}-{fp['numeric_mode']}"


def cpu_threads() -> int:
    """torch's CPU intra-op thread count: part of the numerics fingerprint.

    oneDNN's convolutions and oneMKL's matrix products split a batch's work over the threads, and
    the split changes the order of float additions unless it divides evenly. Measured on this
    project's 2-core AMD EPYC (2026-11-27): the reference Diff-AE's encoder and denoiser gave the
    1-thread bits on 2, 4 and 8 threads at batch 32 but not on 3, and on none of 2, 3, 4, 8 at
    batch 6; the reference subset run on 3 threads moved 109 of its 374 values, one (a small z_usage
    gap) by 6.7e-4 relative, past the exact gate's 1e-4. So a machine whose torch defaults to 3
    threads (one per core) would have failed that gate against a 2-core baseline; `bench run
    --threads N` and `bench train --threads N` pin the count (pinned_threads) and the reference
    check pins 2 (references.CI_OPTIONS).
    """
    return torch.get_num_threads()


@contextlib.contextmanager
def pinned_threads(n: int | None):
    """torch's CPU threads set to n for the block (None: unchanged), restored after, so an API call leaves
    none behind (bench run / evaluate `threads`, bench train --threads)."""
    if n is None:
        yield
        return
    if n < 1:
        raise BenchError(f"threads must be >= 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parse_modes(spec: str, device: torch.device | str) -> PathModes:
    """`--numeric-mode`: "auto" (default_modes), a mode for every eval path ("bf16"), or per path ("decode=bf16,invert=fp32")."""
    spec = spec.strip()
    if spec == "auto":
        return default_modes(device)
    if "=" not in spec:
        get_mode(spec)
        return PathModes(decode=spec, invert=spec, encode=spec)
    out = {}
    for item in spec.split(","):
        path, _, name = item.partition("=")
        path = path.strip()
        if path not in ("decode", "invert", "encode"):
            raise BenchError(f"--numeric-mode: unknown path '{path}' in '{spec}'; use decode, invert or encode")
        out[path] = get_mode(name.strip()).name
    return PathModes(**out)


def autocast(mode: str, device_type: str):
    """The context a network call of this mode runs in (nullcontext for float32 modes)."""
    dt = get_mode(mode).autocast_dtype
    return torch.autocast(device_type, dtype=dt) if dt is not None else contextlib.nullcontext()


def to_memory_format(x: torch.Tensor, mode: str) -> torch.Tensor:
    if get_mode(mode).channels_last and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


# Model methods by path. sample() goes through decode() (and the latent prior,
# the small latent MLP, stays fp32); representations() is the encode path.
_METHODS = {"decode": ("decode",), "invert": ("encode_stochastic",), "encode": ("encode", "representations")}


def _wrap(method, mode: str, device_type: str):
    @functools.wraps(method)
    def run(*args, **kwargs):
        args = [to_memory_format(a, mode) if isinstance(a, torch.Tensor) else a for a in args]
        with autocast(mode, device_type):
            out = method(*args, **kwargs)
        # Outputs leave in float32 whatever ran inside (codes, images, x_T).
        if isinstance(out, dict):
            return {k: v.float().contiguous() for k, v in out.items()}
        return out.float().contiguous()
    run.numeric_mode = mode
    return run


def apply_numeric_modes(model: torch.nn.Module, modes: PathModes) -> torch.nn.Module:
    """Run the model's decode / invert / encode paths in their modes (idempotent; fp32 restores the plain methods).

    The sampler inside decode/encode_stochastic is unchanged: autocast changes
    only the network's matmuls/convs, and the sampler casts eps to float32.
    """
    device_type = model.device.type
    for path, names in _METHODS.items():
        mode = getattr(modes, path)
        for name in names:
            plain = getattr(type(model), name).__get__(model)  # the class's method, never an earlier wrapper
            if mode == "fp32":
                model.__dict__.pop(name, None)
            else:
                object.__setattr__(model, name, _wrap(plain, mode, device_type))
    cl = any(get_mode(getattr(modes, p)).channels_last for p in _METHODS)
    model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    object.__setattr__(model, "numeric_modes", modes)
    return model
