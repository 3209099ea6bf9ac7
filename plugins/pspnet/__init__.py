"""PSPNet's heads: pyramid pooling (``ppm``) and the FCN head for deep supervision (``fcn``).

Light on purpose: factories are "module:attribute" strings, imported only when built or shown.
"""

import segkit


@segkit.hookimpl
def segkit_register_heads(register):
    register("ppm", "segkit_plugins.pspnet.ppm:PPMHead")
    register("fcn", "segkit_plugins.pspnet.fcn:FCNHead")
