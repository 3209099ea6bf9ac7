"""ResNet backbones (standard or deep stem, dilated to output stride 16 or 8).

Light on purpose: factories are "module:attribute" strings, imported only when built or shown.
"""

import segkit

_MODEL = "segkit_plugins.resnet.model"
DEPTHS = (18, 34, 50, 101, 152)


def variant_help(depth: int) -> str:
    """The one-line help of ``resnet<depth>``, given here because listing reads no factory made
    at import time (and the factory's docstring, in model.py)."""
    return f"ResNet-{depth} backbone (the options of 'resnet' with depth {depth})."


@segkit.hookimpl
def segkit_register_backbones(register):
    register("resnet", f"{_MODEL}:ResNet")
    for depth in DEPTHS:
        register(f"resnet{depth}", f"{_MODEL}:resnet{depth}", help=variant_help(depth))
