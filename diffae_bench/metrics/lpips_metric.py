"""LPIPS (Zhang et al. 2018), AlexNet backbone, inputs in [-1, 1] (PROTOCOL "Metrics, exactly").

The `lpips` package ships its learned linear heads (lpips/weights/v0.1/alex.pth)
but takes the AlexNet backbone from torchvision (`alexnet-owt-7be5be79.pth` in
`$TORCH_HOME/hub/checkpoints/`). diffae_bench.metrics.weights finds it (or the file given
by --lpips-weights), fetches it where allowed, and checks its published sha256;
when there is no such file LPIPS is unavailable, tasks leave its column empty
and say why, and no other network is ever reported under the name LPIPS.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import torch

from . import weights as W
from ..checkpoint import file_sha256

ALEXNET_FILE = W.KNOWN["alexnet"].file  # torchvision's ImageNet AlexNet (IMAGENET1K_V1)


def lpips_unavailable_reason() -> str | None:
    """None when LPIPS can be computed here (the published AlexNet file is found), else one line saying why not."""
    return W.unavailable_reason("alexnet")


class LPIPS:
    """Per-image LPIPS distances with the AlexNet backbone, loaded offline."""

    def __init__(self, device: torch.device | str = "cpu"):
        import lpips  # imported here: it prints on construction and is not needed otherwise

        backbone_path = W.verified_path("alexnet")  # FileNotFoundError with the reason: absent, or not the published file
        # pnet_rand=True: build AlexNet without torchvision's download; the
        # learned linear heads (pretrained=True) come from the lpips package.
        with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(backbone_path, map_location="cpu", weights_only=True)
        # lpips splits alexnet.features into slices that keep the module indices:
        # slice{k}.{i}.weight is features.{i}.weight.
        own = net.net.state_dict()
        mapped = {k: state[f"features.{k.split('.', 1)[1]}"] for k in own}
        net.net.load_state_dict(mapped)
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        self.weights = {"lpips_alexnet_backbone": {"path": str(backbone_path), "sha256": W.cached_sha256(backbone_path)},
                        "lpips_linear_heads_v0.1": {"path": str(heads), "sha256": file_sha256(heads)}}

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Per-image distances of image batches in [-1, 1], shape (B,)."""
        if a.shape[1] == 1:  # grey images (MNIST, dSprites): LPIPS takes RGB
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        out = []
        for s in range(0, len(a), batch_size):
            d = self.net(a[s:s + batch_size].to(self.device).float(), b[s:s + batch_size].to(self.device).float())
            out.append(d.flatten().double().cpu())
        return torch.cat(out)


@lru_cache(maxsize=2)
def _shared(device: str, path: str, sha256: str) -> LPIPS:
    return LPIPS(device)


def get_lpips(device: str = "cpu") -> LPIPS | None:
    """A shared LPIPS scorer (one per device and backbone file), or None when its weights are not usable here."""
    if lpips_unavailable_reason():
        return None
    info = W.record_info("alexnet")
    return _shared(device, info["path"], info["sha256"])


def lpips_scorer(device: torch.device | str, result) -> LPIPS | None:
    """The LPIPS scorer for a task, its weights recorded in result.pretrained_weights.

    None, with the reason in result.notes, where the weights are absent.
    """
    reason = lpips_unavailable_reason()
    if reason:
        result.notes.append(reason)
        return None
    fn = get_lpips(str(device))
    result.pretrained_weights.update(fn.weights)
    return fn
