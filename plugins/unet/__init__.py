"""The U-Net decoder (Ronneberger et al., 2015, in the shape of segmentation_models_pytorch's
``Unet``) as ``unet``.

Light on purpose: the factory is a "module:attribute" string, imported only when built or shown.
"""

import segkit


@segkit.hookimpl
def segkit_register_heads(register):
    register("unet", "segkit_plugins.unet.head:UNetHead")
