"""Point sampling of mask logits (Mask2Former/PointRend): losses on K points instead of every pixel."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """masks (N, C, H, W), coords (N, P, 2) in [0, 1] as x, y -> (N, C, P)."""
    return F.grid_sample(masks, 2.0 * coords[:, :, None, :] - 1.0, align_corners=False)[..., 0]


def uncertain_points(logits: torch.Tensor, num_points: int, oversample: float = 3.0, importance: float = 0.75,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (N, 1, H, W) -> (N, P, 2): mostly points where |logit| is small (uncertain), some uniform."""
    N = logits.shape[0]
    n_over = int(num_points * oversample)
    cand = torch.rand(N, n_over, 2, device=logits.device, generator=generator)
    unc = -point_sample(logits, cand)[:, 0].abs()                         # (N, n_over)
    k = int(importance * num_points)
    # the losses average over the points, so their order does not matter; an unsorted top-k skips sorting the
    # k picked values (2-7x cheaper on the CPU at 6144 candidates)
    idx = unc.topk(k, dim=1, sorted=False).indices
    picked = torch.gather(cand, 1, idx[..., None].expand(-1, -1, 2))
    rest = torch.rand(N, num_points - k, 2, device=logits.device, generator=generator)
    return torch.cat([picked, rest], 1)
