"""Partial freezing of residual networks, as the hand-assisted FER method fine-tunes its ResNet-50:
"the first 80% of residual blocks frozen after pretraining".

ResNet-50 has 16 bottleneck blocks; 0.8 x 16 = 12.8 and the method does not say how it rounds.
Our decision (shared models spec, section 2.5): floor, i.e. int(fraction * n) as typical PyTorch code
computes it - 12 blocks (stem, layer1, layer2, layer3.0-3.4 frozen; layer3.5, layer4 and fc train).
`blocks=` gives an exact count instead (13 = exactly the first three stages). Frozen means
requires_grad False for every parameter of the stem and those blocks; their batch-norm layers keep
updating running statistics in train mode, as they do in PyTorch, unless freeze_bn_stats=True.
"""
from __future__ import annotations


def residual_blocks(model):
    """[(name, block)] of a ResNet-style model's residual blocks in forward order (layer1.0, ...)."""
    blocks = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        layer = getattr(model, stage, None)
        if layer is None:
            raise ValueError(f"{type(model).__name__} has no '{stage}': residual_blocks needs a ResNet-style model")
        blocks += [(f"{stage}.{i}", block) for i, block in enumerate(layer)]
    return blocks


def freeze_residual_blocks(model, fraction: float = 0.8, blocks: int | None = None, freeze_bn_stats: bool = False) -> int:
    """Freeze the stem and the first `int(fraction * n)` (or exactly `blocks`) residual blocks.
    Returns the number of frozen blocks. The rest of the model is made trainable."""
    all_blocks = residual_blocks(model)
    n = len(all_blocks)
    if blocks is None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        blocks = int(fraction * n)
    if not 0 <= blocks <= n:
        raise ValueError(f"blocks must be in [0, {n}], got {blocks}")
    model.requires_grad_(True)
    frozen = [getattr(model, name) for name in ("conv1", "bn1") if getattr(model, name, None) is not None]
    frozen += [block for _, block in all_blocks[:blocks]]
    for module in frozen:
        module.requires_grad_(False)
        if freeze_bn_stats:
            for m in module.modules():
                if hasattr(m, "frozen_stats"):
                    m.frozen_stats = True
    return blocks
