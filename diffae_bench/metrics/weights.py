"""Pretrained weights for LPIPS and FID: where they are, whether they are the published files, fetching them.

One table (KNOWN) names each file the suite may load, the library that
publishes it, the library's own download URL and the file's sha256. A file is
used only when its sha256 is the published one, wherever it lies (torch.hub's
cache, $TORCH_HOME/hub/checkpoints, or an explicit --lpips-weights /
--inception-weights path), so no other network, and no stand-in, is ever
reported under the name LPIPS or FID (PROTOCOL "FID and LPIPS offline").

Downloads happen only where asked: `bench run` fetches what its tasks need
before the first task (so every cache key already sees the file), and
`bench weights download`. Both go through torch.hub.download_url_to_file, the
function torchvision's and torch-fidelity's own loaders call, into the same
cache file those libraries read. It writes to a temporary file beside the
target and moves it in place only after the digest matched, so a wrong file
leaves nothing in the cache. `--offline` or DIFFAE_BENCH_OFFLINE=1 never
downloads: a missing file then leaves its metric out with a note, as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from ..checkpoint import file_sha256
from ..errors import BenchError

OFFLINE_ENV = "DIFFAE_BENCH_OFFLINE"
DOWNLOAD_TIMEOUT_S = 30.0  # seconds without progress (connect or read) before a download counts as failed


@dataclass(frozen=True)
class KnownWeights:
    name: str  # what `bench weights` calls it
    metric: str  # the metric left out without it
    file: str  # the library's own file name in $TORCH_HOME/hub/checkpoints (its hash prefix included)
    url: str  # the library's own download URL (tests check it against the installed library)
    sha256: str  # full sha256 of the published file
    size: int | None  # bytes of the published file (a cheap first check)
    what: str  # description for messages
    config_flag: str  # the task-config field (bool) that asks for this metric
    option: str  # the `bench run` option naming a file by hand


# The libraries publish only the first 8 hex digits of each sha256, in the file name
# (torch.hub's check_hash convention: name-<sha256 prefix>.ext). The full digests below
# agree with those prefixes and are the ones several independent public projects pin for
# the same URL and size (e.g. 244,408,911 bytes for AlexNet, 95,628,359 for InceptionV3);
# the full digest is what we verify, so a file that matches only the prefix is refused.
KNOWN: dict[str, KnownWeights] = {
    "alexnet": KnownWeights(
        name="alexnet", metric="LPIPS", file="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",  # torchvision AlexNet_Weights.IMAGENET1K_V1
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", size=244_408_911,
        what="AlexNet backbone weights (torchvision's ImageNet AlexNet)", config_flag="lpips", option="--lpips-weights"),
    "inception": KnownWeights(
        name="inception", metric="FID", file="weights-inception-2015-12-05-6726825d.pth",
        # torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
        what="InceptionV3 weights (torch-fidelity's file)", config_flag="inception", option="--inception-weights"),
}
ALIASES = {"lpips": "alexnet", "fid": "inception"}


def get(name: str) -> KnownWeights:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in KNOWN:
        raise BenchError(f"unknown weights '{name}' (known: {', '.join(KNOWN)}; or lpips, fid)")
    return KNOWN[key]


def hub_checkpoint_dir() -> Path:
    """$TORCH_HOME/hub/checkpoints (torch.hub's own resolution of TORCH_HOME / XDG_CACHE_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline_from_env() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# -- the policy of the current run: offline or not, files named by hand, downloads that failed --
@dataclass
class Policy:
    offline: bool = True  # outside `bench run` / `bench weights download` nothing is ever downloaded
    why_not: str = "not fetched outside `bench run`"  # what a missing file's note says about downloading
    paths: dict = field(default_factory=dict)  # name -> explicit file (--lpips-weights, --inception-weights)
    failed: dict = field(default_factory=dict)  # name -> one line: the download tried this run and why it failed
    progress: bool = True  # download progress bar on stderr


_POLICY: contextvars.ContextVar[Policy] = contextvars.ContextVar("diffae_bench_weights_policy", default=Policy())


def policy() -> Policy:
    return _POLICY.get()


@contextlib.contextmanager
def using(offline: bool = False, paths: dict | None = None, progress: bool = True):
    """The weights policy of one run. Explicit files are checked here, before any work: a bad one is an error."""
    explicit = {}
    for name, p in (paths or {}).items():
        if p is None:
            continue
        w, path = get(name), Path(p).expanduser()
        if not path.is_file():
            raise BenchError(f"{w.option} {p}: no such file")
        problem = check_file(path, w)
        if problem:
            raise BenchError(f"{w.option} {p}: {problem}")
        explicit[w.name] = path.resolve()
    off = offline or offline_from_env()
    why = f"offline (--offline or {OFFLINE_ENV}=1): nothing downloaded" if off else "not fetched"
    token = _POLICY.set(Policy(offline=off, why_not=why, paths=explicit, progress=progress))
    try:
        yield _POLICY.get()
    finally:
        _POLICY.reset(token)


# -- checking a file ---------------------------------------------------------------------
@lru_cache(maxsize=None)
def _sha_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def cached_sha256(path: Path) -> str:
    """sha256 of a file, hashed once per (path, size, mtime): weights are checked before every use."""
    st = path.stat()
    return _sha_of(str(path), st.st_size, st.st_mtime_ns)


def check_file(path: Path, w: KnownWeights) -> str | None:
    """None when path holds the published file, else why not (one line)."""
    size = path.stat().st_size
    if w.size is not None and size != w.size:
        return f"{size} bytes, not the {w.size} of the published {w.file}: refused"
    digest = cached_sha256(path)
    if digest != w.sha256:
        return f"sha256 {digest[:16]}... is not the published {w.sha256[:16]}... of {w.file}: refused"
    return None


def where(name: str) -> Path:
    """The file this run would load for `name`: the explicit path if one was given, else torch.hub's cache file."""
    w = get(name)
    return policy().paths.get(w.name) or hub_checkpoint_dir() / w.file


def hand_placement(w: KnownWeights) -> str:
    return (f"to place it by hand, download {w.url} on a machine with internet, copy it to {hub_checkpoint_dir()}/ "
            f"(or pass {w.option} PATH) and check it with `bench weights verify {w.name}`")


def unavailable_reason(name: str) -> str | None:
    """None when the published file is where this run looks for it, else one line: what is missing and what to do."""
    w = get(name)
    pol = policy()
    path = where(name)
    if path.is_file():
        problem = check_file(path, w)
        return None if problem is None else f"{w.metric} not computed: {path}: {problem} (delete it, then `bench weights download {w.name}`)"
    if w.name in pol.failed:
        return f"{w.metric} not computed: {pol.failed[w.name]}"
    return (f"{w.metric} not computed: {w.what} {w.file} not found in {path.parent} ({pol.why_not}; "
            f"`bench weights download {w.name}` fetches it; or {hand_placement(w)})")


def verified_path(name: str) -> Path:
    """The verified file for `name`; FileNotFoundError with the reason when there is none."""
    reason = unavailable_reason(name)
    if reason:
        raise FileNotFoundError(reason)
    return where(name)


def record_info(name: str) -> dict:
    """What a record says about the weights it used."""
    path = verified_path(name)
    return {"path": str(path), "sha256": cached_sha256(path)}


# -- downloading ---------------------------------------------------------------------------
def download(name: str, progress: bool = True) -> Path:
    """Fetch the published file into torch.hub's cache through torch.hub, verified by its full sha256.

    torch.hub.download_url_to_file compares the digest with `hash_prefix`; given
    the whole digest it checks all of it (torch.hub's check_hash checks only the
    8 digits in the file name). It downloads to a temporary file in the same
    folder and deletes it on any failure, so a refused file is never cached.
    Raises BenchError with one line: what was tried, why it failed, how to place the file by hand.
    """
    import socket
    from urllib.error import URLError

    w = get(name)
    dest = hub_checkpoint_dir() / w.file
    created = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # folders to remove again on failure
    dest.parent.mkdir(parents=True, exist_ok=True)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torch.hub sets none: a black-holed network would hang the run
    try:
        torch.hub.download_url_to_file(w.url, str(dest), hash_prefix=w.sha256, progress=progress)
    except RuntimeError as e:
        if "invalid hash value" in str(e):
            raise BenchError(f"downloaded {w.url} but its sha256 is not the published {w.sha256[:16]}...: refused, "
                             f"nothing cached; {hand_placement(w)}") from None
        raise
    except (URLError, OSError, ValueError) as e:
        why = getattr(e, "reason", None) or e
        raise BenchError(f"downloading {w.url} to {dest} failed ({type(e).__name__}: {why}); {hand_placement(w)}") from None
    finally:
        socket.setdefaulttimeout(old_timeout)
        if not dest.exists():
            for d in created:  # innermost first; only folders this call made, and only while empty
                with contextlib.suppress(OSError):
                    d.rmdir()
    problem = check_file(dest, w)  # the size as well, and whatever else a future check adds
    if problem:
        dest.unlink(missing_ok=True)
        raise BenchError(f"downloaded {w.url}: {problem}; nothing cached")
    return dest


def needed_by(configs) -> list[str]:
    """Names of the weights some task config asks for (its `lpips` / `inception` flag is true)."""
    configs = list(configs)
    return [w.name for w in KNOWN.values() if any(getattr(c, w.config_flag, False) is True for c in configs)]


def prepare(names) -> dict[str, str]:
    """Fetch what this run needs and lacks, unless offline; failures are remembered for the notes (name -> line)."""
    pol = policy()
    for name in names:
        w = get(name)
        if pol.offline or w.name in pol.paths or where(name).exists() or w.name in pol.failed:
            continue
        try:
            download(name, progress=pol.progress)
        except BenchError as e:
            pol.failed[w.name] = str(e)
    return dict(pol.failed)
