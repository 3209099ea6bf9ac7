"""Helpers for the weight-conversion tests: meaningful random weights, and the extras that real
files of other projects carry."""

from __future__ import annotations

import torch
from torch import nn


def randomise_norms(module: nn.Module, seed: int) -> nn.Module:
    """Random affine parameters and running statistics in every batch norm, so that a converter
    that mixes up two norms, or loses their statistics, changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                size = norm.num_features
                norm.weight.copy_(0.5 + torch.rand(size, generator=generator))
                norm.bias.copy_(0.1 * torch.randn(size, generator=generator))
                norm.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
                norm.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return module


def with_sync_bn_buffers(
    state: dict[str, torch.Tensor], old_torch: bool = False
) -> dict[str, torch.Tensor]:
    """A state dict as the CSAIL code's synchronized batch norm saves it: every norm also holds
    ``_tmp_running_mean``, ``_tmp_running_var`` and ``_running_iter``; files written before
    PyTorch 0.4.1 (``old_torch``) have no ``num_batches_tracked``."""
    saved = {}
    for key, value in state.items():
        if old_torch and key.endswith("num_batches_tracked"):
            continue
        saved[key] = value
        if key.endswith(".running_var"):
            norm = key[: -len("running_var")]
            saved[f"{norm}_tmp_running_mean"] = state[f"{norm}running_mean"].clone()
            saved[f"{norm}_tmp_running_var"] = value.clone()
            saved[f"{norm}_running_iter"] = torch.tensor(1)
    return saved


def wrapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys of a model saved inside ``DataParallel``."""
    return {f"module.{key}": value for key, value in state.items()}
