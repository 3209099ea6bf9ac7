"""Built-in losses: cross-entropy, OHEM cross-entropy, Dice, focal, Lovász-softmax and Tversky,
all over non-ignored pixels."""

import segkit


@segkit.hookimpl
def segkit_register_losses(register):
    register(
        "cross_entropy", "segkit_plugins.losses.cross_entropy:CrossEntropyLoss", aliases=["ce"]
    )
    register("ohem_ce", "segkit_plugins.losses.cross_entropy:OhemCrossEntropyLoss")
    register("dice", "segkit_plugins.losses.dice:DiceLoss")
    register("focal", "segkit_plugins.losses.focal:FocalLoss")
    register("lovasz", "segkit_plugins.losses.lovasz:LovaszSoftmaxLoss", aliases=["lovasz_softmax"])
    register("tversky", "segkit_plugins.losses.tversky:TverskyLoss")
