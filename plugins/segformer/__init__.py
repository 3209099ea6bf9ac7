"""SegFormer (Xie et al., NeurIPS 2021): the Mix Transformer backbones ``mit_b0`` .. ``mit_b5``
(and ``mit`` with every width and depth an option) and the all-MLP decode head ``segformer``.

Light on purpose: factories are "module:attribute" strings, imported only when built or shown.
"""

import segkit

_MODEL = "segkit_plugins.segformer.mit"
VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5")


def variant_help(variant: str) -> str:
    """The one-line help of ``mit_<variant>``, given here because listing reads no factory."""
    return f"MiT-{variant.upper()} backbone of SegFormer (the options of 'mit' with its sizes)."


@segkit.hookimpl
def segkit_register_backbones(register):
    register("mit", f"{_MODEL}:MixTransformer")
    for variant in VARIANTS:
        register(f"mit_{variant}", f"{_MODEL}:mit_{variant}", help=variant_help(variant))


@segkit.hookimpl
def segkit_register_heads(register):
    register("segformer", "segkit_plugins.segformer.head:SegFormerHead")
