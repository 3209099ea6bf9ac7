"""Exporting a trained segmentor to ONNX, TorchScript or torch.export, and checking the result.

The exported graph is self-contained: it takes the model's images (N x C x H x W; uint8 RGB for
most models, uint16 for 16-bit ones, C = model.backbone.in_channels), normalises them
with the config's ``data.mean``/``data.std`` and returns class logits or probabilities at the
input size, so whoever runs it needs no segkit constants (docs/export.md).
"""
