"""The plugin module named by the entry point. It stays light: factories are given as
"module:attribute" strings, so `segkit list` never imports torch for them."""

import segkit


@segkit.hookimpl
def segkit_register_backbones(register):
    register("tiny_cnn", "segkit_example.models:TinyCNN", aliases=["tiny"])


@segkit.hookimpl
def segkit_register_losses(register):
    register("poly1", "segkit_example.losses:PolyLoss")
