"""Built-in plugin: data transforms, applied to image and mask together.

A transform is ``transform(sample, rng) -> sample`` where ``rng`` is a
``numpy.random.Generator``; see segkit/data.py for how it is seeded.
"""

import segkit

_GEOMETRIC = "segkit_plugins.transforms.geometric"
_PHOTOMETRIC = "segkit_plugins.transforms.photometric"


@segkit.hookimpl
def segkit_register_transforms(register):
    register("resize", f"{_GEOMETRIC}:Resize")
    register("random_resize", f"{_GEOMETRIC}:RandomResize")
    register("random_crop", f"{_GEOMETRIC}:RandomCrop")
    register("random_flip", f"{_GEOMETRIC}:RandomFlip")
    register("random_rotate", f"{_GEOMETRIC}:RandomRotate")
    register("pad", f"{_GEOMETRIC}:Pad")
    register("photometric_distortion", f"{_PHOTOMETRIC}:PhotometricDistortion")
    register("gaussian_blur", f"{_PHOTOMETRIC}:GaussianBlur")
    register("normalize", f"{_PHOTOMETRIC}:Normalize")
