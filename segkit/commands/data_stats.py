"""``segkit data stats CONFIG``: the values to paste for ``data.mean``, ``data.std`` and the
loss's class weights, measured on the training set.

The images are read the way training reads them before augmentation (decoded in full and
fitted to the model's channels, the pixel values the input normaliser receives, which subtracts
``data.mean`` and divides by ``data.std`` in those same units: 0..255 for 8-bit images,
0..65535 for 16-bit ones, which are never scaled down); random crops, flips and padding
would only add noise and the padding value. Masks count after the dataset's label map, so the
classes are the model's classes.
"""

from __future__ import annotations

from segkit.commands.data import MAX_LISTED, Progress, _cores, _same
from segkit.commands.table import format_table, printable
from segkit.errors import ConfigError

WEIGHT_OPTION = "class_weights"


def add_stats_command(verbs) -> None:
    command = verbs.add_parser(
        "stats",
        help="measure data.mean/data.std and class weights on the training set",
        description="Read every training image and mask and print the per-channel mean and std "
        "(for data.mean and data.std), class pixel frequencies and class weights for the loss.",
    )
    command.add_argument("config", help="path to a YAML config")
    command.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. data.root=/data")
    command.add_argument(
        "--weights",
        choices=("median", "enet"),
        default="median",
        help="class weights: median frequency balancing (Eigen & Fergus; default) or ENet's "
        "1/ln(1.02 + p)",
    )
    command.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes reading files (default: data.workers, at most one per core)",
    )
    command.set_defaults(handler=run_stats)


def run_stats(args) -> int:
    from torch.utils.data import DataLoader

    from segkit.data import build_raw_dataset
    from segkit.datastats import ClassCounts, class_weights
    from segkit.inputs import InputSpec
    from segkit.validation import load_config

    config = load_config(args.config, args.overrides, check_channels=False)
    if not config["data"].get("train"):
        raise ConfigError("data.train: the config defines no training dataset to measure")
    workers = args.workers if args.workers is not None else min(config["data"]["workers"], _cores())
    dataset = build_raw_dataset(config, "train")
    classes = list(dataset.classes)
    moments, counts, problems, dtypes = None, ClassCounts(len(classes)), [], set()
    progress = Progress("measuring data.train", len(dataset))
    samples = SampleStats(dataset, InputSpec.of(config).channels)
    for problem, image_moments, mask_counts, dtype in DataLoader(
        samples, batch_size=None, num_workers=workers, collate_fn=_same
    ):
        progress.step()
        if problem is not None:
            problems.append(problem)
            continue
        moments = image_moments if moments is None else moments.merged(image_moments)
        counts.add(mask_counts)
        dtypes.add(dtype)
    progress.done()
    if moments is None:
        raise ConfigError(f"data.train: no sample could be read, e.g. {problems[0]}")
    weights = class_weights(counts, args.weights)
    if len(dtypes) > 1:
        raise ConfigError(
            f"data.train: the images mix pixel types ({', '.join(sorted(dtypes))}): their values "
            "are in different units, so no one data.mean/data.std fits them; convert them to one"
        )
    (dtype,) = dtypes
    print(printable(render(config, dataset, moments, counts, weights, args.weights, dtype)))
    left_out = list(getattr(dataset, "problems", None) or ())
    if left_out:  # found while indexing (an image without a mask): not samples, not counted
        print(f"note: the dataset left out {len(left_out)} file(s); `segkit data check` lists them")
    if problems:
        print(f"{len(problems)} sample(s) could not be read and are not counted:")
        print(printable("\n".join(f"  {p}" for p in problems[:MAX_LISTED])))
        return 2
    return 0


class SampleStats:
    """Each item is one training sample measured: (problem or None, moments, mask counts)."""

    def __init__(self, dataset, channels: int):
        self.dataset = dataset
        self.channels = channels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        import numpy as np

        from segkit.datastats import IGNORE, ImageMoments
        from segkit.errors import SampleError
        from segkit.imagefiles import EncodedImage, decode_image

        load = getattr(self.dataset, "load", None)
        try:
            sample = load(index) if load is not None else self.dataset[index]
            image = sample["image"]
            if isinstance(image, EncodedImage):  # the model's channels, the file's own type
                image = image.fitted(self.channels, None)
            image = decode_image(image)
        except SampleError as error:
            return str(error), None, None, None
        values = np.asarray(sample["mask"]).ravel()
        counts = np.bincount(values[values != IGNORE].astype(np.int64), minlength=1)
        dtype = str(image.dtype).removeprefix("torch.")
        return None, ImageMoments.of(np.asarray(image)), counts, dtype


def render(config, dataset, moments, counts, weights, weighting: str, dtype: str) -> str:
    from segkit.datastats import rounded

    mean = [round(float(v), 3) for v in moments.mean]
    std = [round(float(v), 3) for v in moments.std]
    lines = [
        f"data.train: {config['data']['train']['type']}, {len(dataset)} images, "
        f"{len(mean)} channel(s), {dtype}, {moments.count:,} pixels",
        format_table(
            ("CHANNEL", "MEAN", "STD"),
            [(i, f"{m:.3f}", f"{s:.3f}") for i, (m, s) in enumerate(zip(mean, std))],
        ),
        "",
        f"class pixel frequencies and weights ({counts.labelled:,} labelled pixels; --weights {weighting}):",
    ]
    shares = counts.pixels / max(counts.labelled, 1)
    rows = [
        (
            i,
            name,
            f"{int(counts.pixels[i]):,}",
            f"{100 * shares[i]:.2f}%",
            int(counts.images_with[i]),
            f"{w:.4g}",
        )
        for i, (name, w) in enumerate(zip(dataset.classes, weights))
    ]
    lines.append(format_table(("ID", "CLASS", "PIXELS", "SHARE", "IMAGES", "WEIGHT"), rows))
    absent = [name for name, n in zip(dataset.classes, counts.pixels) if n == 0]
    if absent:
        lines.append(
            f"absent from the training set (weight 1, which changes nothing): {', '.join(absent)}"
        )
    lines += ["", "Paste into the config:"]
    if min(std) == 0:  # data.std must be positive; a constant channel only needs its mean off
        lines.append("# a channel is constant (std 0): its std is given as 1")
        std = [s if s > 0 else 1.0 for s in std]
    lines += ["data:", f"  mean: {mean}", f"  std: {std}"]
    overrides = [f"data.mean={_flow(mean)}", f"data.std={_flow(std)}"]
    if dtype != config["data"]["image_dtype"]:
        lines.append(f"  image_dtype: {dtype}")
        overrides.append(f"data.image_dtype={dtype}")
    weight_values = rounded(weights, 4)
    keys, others = _weight_keys(config["loss"])
    if isinstance(config["loss"], dict) and keys:
        lines += ["loss:", f"  {WEIGHT_OPTION}: {weight_values}"]
    elif keys:
        lines += [f"{key}: {weight_values}" for key in keys]
    else:
        lines.append(
            f"# the config's loss ({', '.join(others)}) takes no class weights; losses with a "
            f"'{WEIGHT_OPTION}' option: {', '.join(_weighted_losses()) or 'none'}"
        )
    overrides += [f"{key}={_flow(weight_values)}" for key in keys]
    if _normalizes_in_transforms(config):
        lines.append(
            "# note: data.train.transforms has 'normalize', which takes mean and std on the 0..1 "
            f"scale: divide the values above by {65535 if dtype == 'uint16' else 255} there "
            "(data.mean/data.std are then not used)"
        )
    lines += ["or on the command line:", "  " + " ".join(overrides)]
    return "\n".join(lines)


def _flow(values: list[float]) -> str:
    return "[" + ",".join(repr(v) for v in values) + "]"


def _weight_keys(loss) -> tuple[list[str], list[str]]:
    """The config keys of the loss terms that take class weights, and the names of those that
    do not."""
    from segkit.builder import registry

    terms = (
        [("loss", loss)]
        if isinstance(loss, dict)
        else [(f"loss.{i}", t) for i, t in enumerate(loss)]
    )
    keys, others = [], []
    for key, term in terms:
        parameters = {p.name for p in registry().get("loss", term["type"]).parameters()}
        if WEIGHT_OPTION in parameters:
            keys.append(f"{key}.{WEIGHT_OPTION}")
        else:
            others.append(term["type"])
    return keys, others


def _weighted_losses() -> list[str]:
    from segkit.builder import registry

    return [
        c.name for c in registry().list("loss") if WEIGHT_OPTION in {p.name for p in c.parameters()}
    ]


def _normalizes_in_transforms(config) -> bool:
    transforms = config["data"]["train"].get("transforms") or []
    return any(isinstance(t, dict) and t.get("type") == "normalize" for t in transforms)
