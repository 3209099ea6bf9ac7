"""Exporting a trained segmentor to ONNX, TorchScript or torch.export, and checking the result.

The exported graph is self-contained: it takes uint8 RGB images (N x 3 x H x W), normalises them
with the config's ``data.mean``/``data.std`` and returns class logits or probabilities at the
input size, so whoever runs it needs no segkit constants (docs/export.md).
"""
