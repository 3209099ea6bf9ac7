"""Lovász-softmax loss (Berman, Rannen Triki and Blaschko, CVPR 2018): a smooth surrogate of the
Jaccard loss 1 - IoU, the metric segmentation is scored by.

For one class, each labelled pixel has an error: 1 - p on the pixels of the class, p on the
others (p the softmax probability of the class). The Lovász extension of the Jaccard loss is
then the dot product of these errors, sorted from largest to smallest, with its gradient: the
increase of the Jaccard loss as each pixel in that order joins the set of mistakes. It is exact
where the errors are 0 or 1 and piecewise linear between, so it can be minimised by gradient
descent. The loss is the mean of the class losses over the classes that ``classes`` selects.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import nn

from segkit.constraints import ClassIndices

ClassChoice = Annotated[Literal["present", "all"] | list[int], ClassIndices()]


class LovaszSoftmaxLoss(nn.Module):
    """Mean Lovász-softmax over the chosen classes; ignored pixels are dropped first.

    ``classes``: ``present`` (those with a labelled pixel in the image or batch, as the paper's
    code), ``all``, or a list of class indices. ``per_image``: one loss per image, averaged over
    the images that have a labelled pixel; else one over the whole batch (the paper's default).
    """

    def __init__(
        self, ignore_index: int, classes: ClassChoice = "present", per_image: bool = False
    ):
        super().__init__()
        if isinstance(classes, str) and classes not in ("present", "all"):
            raise ValueError(
                f"classes must be 'present', 'all' or a list of indices, got {classes!r}"
            )
        if isinstance(classes, list) and (not classes or any(c < 0 for c in classes)):
            raise ValueError(f"classes must be a non-empty list of class indices, got {classes}")
        self.ignore_index = ignore_index
        self.classes = classes
        self.per_image = per_image

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probabilities = logits.softmax(dim=1)
        if not self.per_image:
            loss = self._pixels_loss(probabilities, target)
            return loss if loss is not None else logits.sum() * 0
        losses = [
            loss
            for loss in (
                self._pixels_loss(probabilities[i : i + 1], target[i : i + 1])
                for i in range(len(logits))
            )
            if loss is not None
        ]
        return torch.stack(losses).mean() if losses else logits.sum() * 0

    def _pixels_loss(
        self, probabilities: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor | None:
        """The loss over the labelled pixels given, or None where no class is left to score."""
        num_classes = probabilities.shape[1]
        flat = probabilities.permute(0, 2, 3, 1).reshape(-1, num_classes)
        labels = target.reshape(-1)
        kept = labels != self.ignore_index
        flat, labels = flat[kept], labels[kept]
        if self.classes == "all":
            chosen = torch.arange(num_classes, device=flat.device)
        elif self.classes == "present":
            chosen = labels.unique()
        else:
            if max(self.classes) >= num_classes:
                raise ValueError(
                    f"classes {self.classes} names classes beyond the model's {num_classes}"
                )
            chosen = torch.tensor(self.classes, device=flat.device)
        if len(labels) == 0 or len(chosen) == 0:
            return None
        foreground = (labels.unsqueeze(1) == chosen).to(flat.dtype)  # pixels x chosen classes
        errors = (foreground - flat[:, chosen]).abs()
        errors, order = errors.sort(dim=0, descending=True)
        gradient = jaccard_gradient(foreground.gather(0, order))
        return (errors * gradient).sum(dim=0).mean()


def jaccard_gradient(foreground: torch.Tensor) -> torch.Tensor:
    """Per column, the Jaccard loss of the first k pixels counted as mistakes minus that of the
    first k - 1: the gradient of the Lovász extension at the sorted errors (the paper's Alg. 1).
    ``foreground`` is 1 where a pixel, in the order of decreasing error, belongs to the class."""
    label_area = foreground.sum(dim=0)
    intersection = label_area - foreground.cumsum(dim=0)
    union = label_area + (1 - foreground).cumsum(dim=0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
