"""Numeric modes: validated, really applied around the network only, close to fp32, recorded by the runner."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from diffae_bench import diffusion as D
from diffae_bench.errors import BenchError
from diffae_bench.models import build_model
from diffae_bench.numerics import PathModes, apply_numeric_modes, default_modes, get_mode, parse_modes
from diffae_bench.presets import PRESETS


def tiny_model(seed: int = 0, size: int = 16):
    """A tiny random Diff-AE whose zero-initialised output convs are re-drawn, so eps depends on the input."""
    torch.manual_seed(seed)
    model = build_model("diffae", PRESETS.get("tiny").for_data(3, size)).eval()
    for name, p in model.named_parameters():
        if p.ndim == 4 and not p.any():
            torch.nn.init.normal_(p, std=0.02)
    return model


def test_modes_are_validated():
    assert get_mode("bf16").autocast_dtype is torch.bfloat16
    for bad in ("fp16", "", "BF16"):
        with pytest.raises(BenchError, match="unknown numeric mode"):
            get_mode(bad)
    with pytest.raises(BenchError, match="unknown numeric mode 'fp64'"):
        parse_modes("decode=fp64", "cpu")
    with pytest.raises(BenchError, match="unknown path 'sample'"):
        parse_modes("sample=bf16", "cpu")
    with pytest.raises(BenchError):
        PathModes(decode="half")
    assert parse_modes("bf16", "cpu").describe() == "bf16"
    assert parse_modes("decode=bf16", "cpu").describe() == "decode=bf16,invert=fp32,encode=fp32"
    assert parse_modes("auto", "cpu") == default_modes("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_cpu_defaults_do_not_depend_on_the_cpu_kind(monkeypatch, native):
    """A default record must mean the same on an AVX2 CPU and on one with native bf16 (issue 13)."""
    import diffae_bench.numerics as N

    monkeypatch.setattr(N, "native_bf16", lambda device: native)
    assert N.default_modes("cpu") == PathModes() and N.default_modes("cpu").describe() == "fp32"


def test_numerics_fingerprint_names_the_kernels_torch_and_mode():
    from diffae_bench.numerics import cpu_capability, numerics_fingerprint

    fp = numerics_fingerprint("cpu", "fp32")
    assert fp["cpu_capability"] == cpu_capability() == str(torch.backends.cpu.get_cpu_capability())
    assert fp["torch"] == torch.__version__ and fp["numeric_mode"] == "fp32"
    mkl = f"-{fp['mkl']}" if fp["mkl"] else ""
    assert fp["threads"] == torch.get_num_threads()
    assert fp["id"] == (f"cpu-{cpu_capability()}{mkl}-{fp['blas']}-{fp['threads']}threads"
                        f"-torch{torch.__version__.split('+')[0]}-fp32")


def test_fingerprint_names_numpys_blas_kernels_and_honours_openblas_coretype():
    """OpenBLAS picks kernels by CPU model, not by ATen's family: the fingerprint must say which ran."""
    import os
    import subprocess
    import sys

    from diffae_bench.numerics import blas_kernels, fingerprint_id, is_x86

    if not blas_kernels().startswith("openblas-") or not is_x86():
        pytest.skip("numpy's BLAS is not OpenBLAS on x86 here")
    code = "from diffae_bench.numerics import blas_kernels; print(blas_kernels())"
    for core in ("Sandybridge", "Haswell"):  # both run on any x86-64 CPU with AVX2
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OPENBLAS_CORETYPE": core},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == f"openblas-{core}"
    # records made before the BLAS was fingerprinted keep their id
    old = {"device_type": "cpu", "cpu_capability": "AVX512", "torch": "2.14.1+cu130", "numeric_mode": "fp32"}
    assert fingerprint_id(old) == "cpu-AVX512-torch2.14.1-fp32"
    assert fingerprint_id({**old, "blas": "openblas-Haswell"}) == "cpu-AVX512-openblas-Haswell-torch2.14.1-fp32"
    assert (fingerprint_id({**old, "mkl": "mkl-amd", "blas": "openblas-SkylakeX"})
            == "cpu-AVX512-mkl-amd-openblas-SkylakeX-torch2.14.1-fp32")
    assert (fingerprint_id({**old, "mkl": "mkl-amd", "blas": "openblas-SkylakeX", "threads": 2})
            == "cpu-AVX512-mkl-amd-openblas-SkylakeX-2threads-torch2.14.1-fp32")


def test_mkl_branch_names_the_vendor_and_on_intel_the_capped_instruction_set(monkeypatch):
    """oneMKL runs a generic path on AMD CPUs and the ISA's (capped by MKL_ENABLE_INSTRUCTIONS) on Intel ones."""
    import diffae_bench.numerics as N

    if not torch.backends.mkl.is_available() or not N.is_x86():
        assert N.mkl_branch() is None
        return
    N.mkl_branch.cache_clear()
    this_machine = N.mkl_branch()
    assert this_machine.startswith(f"mkl-{N.cpu_vendor()}")
    intel = {"vendor_id": "GenuineIntel", "flags": "fpu sse2 avx avx2 avx512f avx512bw"}
    amd = {"vendor_id": "AuthenticAMD", "flags": intel["flags"]}
    cases = [(intel, None, "mkl-intel-AVX512"), (intel, "AVX2", "mkl-intel-AVX2"),
             ({**intel, "flags": "fpu sse2 avx avx2"}, None, "mkl-intel-AVX2"), (amd, None, "mkl-amd"),
             (amd, "AVX2", "mkl-amd")]
    try:
        for info, cap, expected in cases:
            monkeypatch.setattr(N, "_cpuinfo", lambda info=info: info)
            if cap is None:
                monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
            else:
                monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", cap)
            N.mkl_branch.cache_clear()
            assert N.mkl_branch() == expected, (info, cap)
    finally:
        monkeypatch.undo()
        N.mkl_branch.cache_clear()
    assert N.mkl_branch() == this_machine  # the machine's own branch again once the stand-ins are gone


@pytest.mark.slow  # starts processes
def test_mkl_branch_agrees_with_what_onemkl_says_it_runs():
    """Independent reference: oneMKL's own verbose banner names the code path it dispatched to.

    "Intel(R) Architecture processors" is its generic path (what it runs on AMD CPUs); on Intel it
    names the instruction set ("... Intel(R) AVX2 ...", "... Intel(R) AVX-512 ..."). Checked natively
    and with the AVX2 lane's cap.
    """
    import os
    import subprocess
    import sys

    import diffae_bench.numerics as N

    if not torch.backends.mkl.is_available() or not N.is_x86():
        pytest.skip("torch has no oneMKL here")
    code = ("import torch; torch.mm(torch.ones(8, 8), torch.ones(8, 8)); "
            "from diffae_bench.numerics import mkl_branch; print('BRANCH', mkl_branch())")
    for cap in (None, "AVX2"):
        env = {**os.environ, "MKL_VERBOSE": "1"}
        env.pop("MKL_ENABLE_INSTRUCTIONS", None)
        if cap:
            env["MKL_ENABLE_INSTRUCTIONS"] = cap
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        banner = next(line for line in out.splitlines() if line.startswith("MKL_VERBOSE oneMKL"))
        branch = next(line.split()[1] for line in out.splitlines() if line.startswith("BRANCH"))
        said = ("AVX512" if "AVX-512" in banner else "AVX2" if "AVX2" in banner
                else "generic" if "Architecture processors" in banner else banner)
        assert {"mkl-amd": "generic", "mkl-other": "generic"}.get(branch, branch.removeprefix("mkl-intel-")) == said, \
            (cap, branch, banner)


def test_bf16_runs_the_network_under_autocast_and_the_sampler_in_fp32():
    model = tiny_model()
    seen = []
    model.unet.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    steps = []
    orig = D._x0_and_eps

    def spy(eps_fn, x, t, a, clip):
        x0, eps = orig(eps_fn, x, t, a, clip)
        steps.append((x.dtype, x0.dtype, eps.dtype))
        return x0, eps

    apply_numeric_modes(model, PathModes(decode="bf16", invert="bf16", encode="bf16"))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = model.encode(x)
    D._x0_and_eps = spy
    try:
        x_T = model.encode_stochastic(x, 2, z)
        out = model.decode(z, x_T, 2)
    finally:
        D._x0_and_eps = orig
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert z.dtype == x_T.dtype == out.dtype == torch.float32
    assert steps and all(d == (torch.float32,) * 3 for d in steps)  # x_t, x0 and eps stay float32
    # fp32 restores the plain methods: no autocast any more.
    apply_numeric_modes(model, PathModes())
    seen.clear()
    model.decode(z, x_T, 2)
    assert seen and all(d == torch.float32 for d in seen) and "decode" not in model.__dict__


@pytest.mark.parametrize("modes", [default_modes("cpu"), PathModes(decode="bf16", invert="fp32", encode="bf16"),
                                   PathModes(decode="fp32-cl", invert="fp32-cl", encode="fp32-cl")])
def test_decode_in_a_mode_matches_fp32(modes):
    model = tiny_model()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    z = model.encode(x)
    x_T = model.encode_stochastic(x, 3, z)
    ref = model.decode(z, x_T, 3)
    apply_numeric_modes(model, modes)
    out = model.decode(z, x_T, 3)
    assert out.dtype == torch.float32 and out.is_contiguous()
    # Loose: bf16 keeps ~3 significant digits and a random network amplifies them
    # (the metric-level deltas on a trained model are bench perf --accuracy's job).
    assert (out - ref).abs().mean() < 0.02 and (out - ref).abs().max() < 0.3
    assert (model.encode(x) - z).abs().mean() < 0.02


def test_runner_records_the_numeric_mode(tmp_path, monkeypatch):
    from diffae_bench.harness.runner import RunOptions, run

    (tmp_path / "numfactory.py").write_text(textwrap.dedent("""
        from diffae_bench.models import build_model
        from diffae_bench.presets import PRESETS

        def make():
            return build_model("diffae", PRESETS.get("tiny").for_data(3, 16))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "decode=fp32-cl,invert=fp32,encode=fp32"
    opts = RunOptions(tasks=("reconstruction",), models=("numfactory:make",), dataset="shapes", limit=4, T=(10,),
                      out=str(tmp_path / "run"), device="cpu", use_cache=False, progress=False, numeric_mode=spec,
                      task_options={"reconstruction": {"random_xT": False, "lpips": False}})
    _, records = run(opts)
    assert [r["numeric_mode"] for r in records] == [spec]
    with pytest.raises(BenchError, match="unknown numeric mode 'fp8'"):
        run(RunOptions(tasks=("reconstruction",), models=("numfactory:make",), numeric_mode="fp8", device="cpu"))



def test_pinned_threads_give_the_same_record_whatever_the_process_default(tmp_path):
    """torch's thread count can change bits (numerics.cpu_threads; measured: the reference subset on 3 threads
    moved a z_usage gap by 6.7e-4 relative), so a run names it in its fingerprint, and `threads=` pins it:
    from a process on 1 thread or on 3, a run pinned to 2 gives the same bits and the same fingerprint,
    and leaves the process's own count as it was."""
    from diffae_bench import evaluate

    def records(default: int) -> list[dict]:
        before = torch.get_num_threads()
        torch.set_num_threads(default)
        try:
            res = evaluate("diffae-small-shapes", tasks=["reconstruction"], dataset="shapes", T=[3], limit=6,
                           threads=2, device="cpu", offline=True, task_options={"reconstruction": {"lpips": False}})
            assert torch.get_num_threads() == default  # restored
            return res.records
        finally:
            torch.set_num_threads(before)

    a, b = records(1), records(3)
    assert a[0]["numerics"]["threads"] == 2 and "-2threads-" in a[0]["numerics"]["id"]
    assert a[0]["numerics"] == b[0]["numerics"] and a[0]["device"] == b[0]["device"]
    assert a[0]["device"].endswith(" x2 threads")
    assert [m["value"] for m in a[0]["metrics"]] == [m["value"] for m in b[0]["metrics"]]


def test_the_reference_check_pins_its_threads():
    from diffae_bench.references import CHECK_THREADS, subset_args

    for data in ("shapes", "mnist"):
        args = subset_args(data, Path("out"))
        assert args[args.index("--threads") + 1] == str(CHECK_THREADS)
