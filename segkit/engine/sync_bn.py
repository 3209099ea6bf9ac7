"""Batch norm over the global batch when several processes train one model.

With plain BatchNorm each process normalises with the statistics of its own few images; with a
synchronised one, every process uses the mean and variance of the whole global batch, so that
training on N processes with b images each normalises like one process with N * b images.

On GPUs the engine uses torch's ``nn.SyncBatchNorm``. Torch's refuses CPU tensors (and DDP
refuses it in CPU modules), so on CPUs the engine uses :class:`CPUSyncBatchNorm` below: the same
arithmetic written with ordinary tensor operations and two Gloo collectives. Both keep the
parameters and buffers of the layer they replace (same names, same tensors), so checkpoints stay
interchangeable with plain BatchNorm and evaluation, which uses the running statistics, needs no
communication.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

Scope = Literal["marked", "all"]


def synchronize_batch_norms(model: nn.Module, scope: Scope, device: torch.device) -> int:
    """Replace, in place, the batch norms of the components marked ``sync_bn`` (``marked``: those
    built with ``norm: syncbn``) or of the whole model (``all``) by synchronised ones; returns how
    many were replaced. Call it once the process group exists, before wrapping the model in DDP."""
    if scope == "all":
        roots = [model]
    else:
        roots = [module for module in model.modules() if getattr(module, "sync_bn", False)]
    kind = nn.SyncBatchNorm if device.type == "cuda" else CPUSyncBatchNorm
    return sum(_replace_batch_norms(root, kind) for root in roots)


def _replace_batch_norms(module: nn.Module, kind: type) -> int:
    count = 0
    for name, child in module.named_children():
        synchronised = isinstance(child, (nn.SyncBatchNorm, CPUSyncBatchNorm))
        if isinstance(child, _BatchNorm) and not synchronised:
            setattr(module, name, _like(kind, child))
            count += 1
        else:
            count += _replace_batch_norms(child, kind)
    return count


def _like(kind: type, bn: _BatchNorm) -> nn.Module:
    """A ``kind`` layer that holds ``bn``'s very parameters and buffers."""
    layer = kind(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        layer.weight, layer.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        layer.running_mean, layer.running_var = bn.running_mean, bn.running_var
        layer.num_batches_tracked = bn.num_batches_tracked
    return layer.train(bn.training)


class CPUSyncBatchNorm(_BatchNorm):
    """Batch norm with statistics over every process's batch; for CPUs, where torch's
    ``nn.SyncBatchNorm`` does not run. Outside training, or in a single process, it is plain
    batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (
            self.training
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            return super().forward(input)
        self._check_input_dim(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        return _GlobalBatchNorm.apply(
            input,
            self.weight,
            self.bias,
            self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.eps,
            momentum,
        )


class _GlobalBatchNorm(torch.autograd.Function):
    """Forward: each process sends its (count, mean, sum of squared deviations) per channel;
    all combine them in float64 (Chan's parallel formula; no cancellation of large sums of
    squares). Backward: the per-channel sums of the output gradient and of its product with the
    normalised input are summed over the processes, as the input gradient of batch norm needs
    them over the whole batch; the weight and bias gradients stay local, DDP averages them with
    the other gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum):
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, channels] + [1] * (x.dim() - 2)
        values = x.float()
        count = values.numel() // channels
        if count:
            local_mean = values.mean(dims)
            local_m2 = (values - local_mean.view(shape)).square().sum(dims)
        else:  # an empty batch still takes part in the collective
            local_mean = local_m2 = values.new_zeros(channels)
        local = torch.cat(
            [
                torch.tensor([count], dtype=torch.float64, device=x.device),
                local_mean.double(),
                local_m2.double(),
            ]
        )
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local)
        stats = torch.stack(gathered)
        counts, means, m2s = stats[:, :1], stats[:, 1 : channels + 1], stats[:, channels + 1 :]
        total = float(counts.sum())
        if total <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got {int(total)} over "
                "all processes"
            )
        mean = (counts * means).sum(0) / total
        m2 = (m2s + counts * (means - mean).square()).sum(0)
        invstd = torch.rsqrt(m2 / total + eps)
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean), alpha=momentum)
        if running_var is not None:
            running_var.mul_(1 - momentum).add_((m2 / (total - 1)).to(running_var), alpha=momentum)
        mean, invstd = mean.float().view(shape), invstd.float().view(shape)
        out = (values - mean) * invstd
        if weight is not None:
            out = out * weight.float().view(shape) + bias.float().view(shape)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.total = total
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, mean, invstd = ctx.saved_tensors
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        grad = grad_output.float()
        normalised = (x.float() - mean) * invstd
        sum_grad = grad.sum(dims)
        sum_grad_normalised = (grad * normalised).sum(dims)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            sums = torch.cat([sum_grad, sum_grad_normalised])
            dist.all_reduce(sums)
            shape = mean.shape
            scale = invstd if weight is None else invstd * weight.float().view(shape)
            grad_input = (
                grad
                - (sums[:channels] / ctx.total).view(shape)
                - normalised * (sums[channels:] / ctx.total).view(shape)
            ) * scale
            grad_input = grad_input.to(x.dtype)
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = sum_grad_normalised.to(weight.dtype)
        if weight is not None and ctx.needs_input_grad[2]:
            grad_bias = sum_grad.to(weight.dtype)
        return grad_input, grad_weight, grad_bias, None, None, None, None
