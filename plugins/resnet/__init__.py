"""ResNet backbones (standard or deep stem, dilated to output stride 16 or 8).

Light on purpose: factories are "module:attribute" strings, imported only when built or shown.
"""

import segkit

_MODEL = "segkit_plugins.resnet.model"


@segkit.hookimpl
def segkit_register_backbones(register):
    register("resnet", f"{_MODEL}:ResNet")
    for depth in (18, 34, 50, 101, 152):
        register(f"resnet{depth}", f"{_MODEL}:resnet{depth}")
