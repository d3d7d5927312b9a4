"""LPIPS (Zhang et al. 2018), AlexNet backbone, inputs in [-1, 1] (PROTOCOL "Metrics, exactly").

The `lpips` package ships its learned linear heads (lpips/weights/v0.1/alex.pth)
but takes the AlexNet backbone from torchvision, which would download
`alexnet-owt-7be5be79.pth` into `$TORCH_HOME/hub/checkpoints/`. Nothing can be
downloaded on these machines, so the backbone is loaded only from that cache:
when the file is absent LPIPS is unavailable, tasks leave its column empty
and say why, and no other network is ever reported under the name LPIPS.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import torch

from .checkpoint import file_sha256

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet (IMAGENET1K_V1)


def hub_checkpoint_dir() -> Path:
    """$TORCH_HOME/hub/checkpoints (torch.hub's own resolution of TORCH_HOME / XDG_CACHE_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_hub_weights(filename: str, metric: str, what: str, origin: str) -> str | None:
    """None when a weights file is in the torch hub cache, else one line saying what is missing and where."""
    path = hub_checkpoint_dir() / filename
    if path.is_file():
        return None
    return f"{metric} not computed: {what} {filename} not found in {path.parent} ({origin}; copy it there to enable {metric})"


def lpips_unavailable_reason() -> str | None:
    """None when LPIPS can be computed here, else one line saying what is missing and where."""
    return missing_hub_weights(ALEXNET_FILE, "LPIPS", "AlexNet backbone weights", "torchvision's ImageNet AlexNet")


class LPIPS:
    """Per-image LPIPS distances with the AlexNet backbone, loaded offline."""

    def __init__(self, device: torch.device | str = "cpu"):
        import lpips  # imported here: it prints on construction and is not needed otherwise

        reason = lpips_unavailable_reason()
        if reason:
            raise FileNotFoundError(reason)
        backbone_path = hub_checkpoint_dir() / ALEXNET_FILE
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
        self.weights = {"lpips_alexnet_backbone": {"path": str(backbone_path), "sha256": file_sha256(backbone_path)},
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
def get_lpips(device: str = "cpu") -> LPIPS | None:
    """A shared LPIPS scorer, or None when its weights are absent (see lpips_unavailable_reason)."""
    if lpips_unavailable_reason():
        return None
    return LPIPS(device)


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
