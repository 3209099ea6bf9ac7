"""Built-in losses: cross-entropy, OHEM cross-entropy and Dice, all over non-ignored pixels."""

import segkit


@segkit.hookimpl
def segkit_register_losses(register):
    register(
        "cross_entropy", "segkit_plugins.losses.cross_entropy:CrossEntropyLoss", aliases=["ce"]
    )
    register("ohem_ce", "segkit_plugins.losses.cross_entropy:OhemCrossEntropyLoss")
    register("dice", "segkit_plugins.losses.dice:DiceLoss")
