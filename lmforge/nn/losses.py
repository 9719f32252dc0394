"""Token-level cross-entropy shared by every language-modelling objective.

``L = -(1/N) sum_{t: y_t != ignore} log softmax(z_t)[y_t]`` with ``N`` the number of
counted targets. Logits are cast to fp32 first, so the softmax and the loss keep full
precision under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                        ignore_index: int = -100, label_smoothing: float = 0.0
                        ) -> tuple[torch.Tensor, int | torch.Tensor]:
    """Mean cross-entropy over non-ignored targets and their count.

    ``logits`` (..., V), ``targets`` (...). The count is a Python int on the CPU and a
    0-d tensor elsewhere (no host sync on an accelerator).
    """
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=ignore_index, label_smoothing=label_smoothing)
    n = (targets != ignore_index).sum()
    return loss, int(n) if targets.device.type == "cpu" else n
