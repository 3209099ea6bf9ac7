"""Input-pipeline throughput: segkit's training pipeline against a straightforward PIL +
torchvision pipeline with the same augmentations, in one run, on ADE20K-sized JPEGs.

The images are made here (procedural scenes saved as JPEG at ADE20K's typical sizes, with
8-bit PNG annotations in the ADEChallengeData2016 layout), so no download is needed. Both
pipelines read the same files and apply, with the same random decisions, the usual ADE20K
training recipe: random resize (base 2048x512, ratio 0.5-2.0), random crop 512x512 with
cat_max_ratio 0.75, horizontal flip, photometric distortion, normalisation, padding to 512x512.

"Images/s per worker" is measured in one process with one PyTorch thread, which is what each
DataLoader worker is; ``--workers N`` also measures N DataLoader workers together.

    python benchmarks/data_pipeline.py                # about a minute
    python benchmarks/data_pipeline.py --quick        # a few seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, write_results  # noqa: E402

from segkit.builder import build  # noqa: E402
from segkit.data import TransformedDataset, collate  # noqa: E402
from segkit.engine.sampler import InfiniteSampler  # noqa: E402

# Typical ADE20K image sizes (height, width): most are about 512 on the short side.
ADE_SIZES = [
    (512, 683),
    (683, 512),
    (512, 512),
    (384, 512),
    (375, 500),
    (300, 400),
    (768, 1024),
    (480, 640),
]
# The synthetic scene classes as ADE20K annotation values (sky, earth, water, road, building,
# tree, sun -> unlabelled, ball).
ADE_LABELS = np.array([3, 14, 22, 7, 2, 5, 0, 120], dtype=np.uint8)

RECIPE = [
    {"type": "random_resize", "base_size": [2048, 512], "ratio_range": [0.5, 2.0]},
    {"type": "random_crop", "size": [512, 512], "cat_max_ratio": 0.75},
    {"type": "random_flip", "prob": 0.5},
    {"type": "photometric_distortion"},
    {"type": "normalize"},
    {"type": "pad", "size": [512, 512]},
]


def make_images(root: Path, count: int) -> Path:
    """ADEChallengeData2016/{images,annotations}/training with ``count`` JPEG/PNG pairs."""
    from segkit_plugins.synthetic.dataset import Scene

    images = root / "ADEChallengeData2016" / "images" / "training"
    annotations = root / "ADEChallengeData2016" / "annotations" / "training"
    images.mkdir(parents=True)
    annotations.mkdir(parents=True)
    for number in range(count):
        rng = np.random.default_rng(number)
        height, width = ADE_SIZES[number % len(ADE_SIZES)]
        pixels, classes = Scene(rng, height, width).render()
        labels = ADE_LABELS[classes]
        name = f"ADE_train_{number + 1:08d}"
        Image.fromarray(pixels).save(images / f"{name}.jpg", quality=90)
        Image.fromarray(labels).save(annotations / f"{name}.png")
    return root


# ---- the reference: decode with PIL, then torchvision v2 functional ops on tensors ------------


class ReferencePipeline:
    """What one would write with PIL and torchvision: decode in full, convert to tensors, then
    the same steps with torchvision's functional API, drawing the same random decisions."""

    def __init__(self, files: list[tuple[Path, Path]], seed: int = 0):
        self.files = files
        self.seed = seed
        self.mean = [0.485, 0.456, 0.406]
        self.std = [0.229, 0.224, 0.225]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, draw = key
        rng = np.random.default_rng([self.seed, draw])
        image_path, mask_path = self.files[index]
        image = TF.pil_to_tensor(Image.open(image_path).convert("RGB"))
        raw = torch.from_numpy(np.array(Image.open(mask_path))).long()
        mask = torch.where(raw == 0, 255, raw - 1)[None]

        ratio = rng.uniform(0.5, 2.0)
        height, width = image.shape[-2:]
        scale = min(2048 * ratio / max(height, width), 512 * ratio / min(height, width))
        size = [int(height * scale + 0.5), int(width * scale + 0.5)]
        image = TF.resize(image, size, antialias=True)
        mask = TF.resize(mask, size, interpolation=TF.InterpolationMode.NEAREST_EXACT)

        crop_h, crop_w = min(512, size[0]), min(512, size[1])
        for _ in range(10):
            top = int(rng.integers(0, size[0] - crop_h + 1))
            left = int(rng.integers(0, size[1] - crop_w + 1))
            window = mask[0, top : top + crop_h, left : left + crop_w]
            labels, counts = torch.unique(window[window != 255], return_counts=True)
            if len(labels) > 1 and counts.max() < 0.75 * counts.sum():
                break
        image = TF.crop(image, top, left, crop_h, crop_w)
        mask = TF.crop(mask, top, left, crop_h, crop_w)

        if rng.random() < 0.5:
            image, mask = TF.horizontal_flip(image), TF.horizontal_flip(mask)

        brightness = rng.uniform(-32, 32) if rng.random() < 0.5 else None
        contrast_first = rng.random() < 0.5
        contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
        saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
        hue = rng.uniform(-36, 36) if rng.random() < 0.5 else None
        if brightness is not None:
            image = (image.float() + brightness).clamp(0, 255).round().to(torch.uint8)
        if contrast is not None and contrast_first:
            image = TF.adjust_contrast(image, contrast)
        if saturation is not None:
            image = TF.adjust_saturation(image, saturation)
        if hue is not None:
            image = TF.adjust_hue(image, hue / 360)
        if contrast is not None and not contrast_first:
            image = TF.adjust_contrast(image, contrast)

        image = TF.normalize(TF.to_dtype(image, torch.float32, scale=True), self.mean, self.std)
        pad = [0, 0, 512 - crop_w, 512 - crop_h]
        image = TF.pad(image, pad, fill=0)
        mask = TF.pad(mask, pad, fill=255)
        return {"image": image, "mask": mask[0], "name": image_path.stem}


# ---- measuring ---------------------------------------------------------------------------------


def per_worker_rate(dataset, count: int, seconds: float) -> float:
    """Samples per second in this process (one thread), over at least ``count`` samples and
    ``seconds`` seconds; draws continue across calls so that every round sees new samples."""
    size = len(dataset)
    start = time.perf_counter()
    done = 0
    while done < count or time.perf_counter() - start < seconds:
        draw = per_worker_rate.draw
        dataset[(draw % size, draw)]
        per_worker_rate.draw += 1
        done += 1
    return done / (time.perf_counter() - start)


per_worker_rate.draw = 0


def loader_rate(dataset, workers: int, batches: int, batch_size: int = 8) -> float:
    """Samples per second through a DataLoader with ``workers`` processes (after warm-up)."""
    sampler = InfiniteSampler(len(dataset), seed=0)
    loader = iter(
        DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate
        )
    )
    for _ in range(max(1, workers)):
        next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch_size / (time.perf_counter() - start)


def agreement(segkit, reference, count: int) -> dict:
    """How alike the two pipelines' outputs are for the same draws: the masks should be equal
    and the images differ only where the implementations of saturation differ (HSV scaling in
    segkit, blending with grey in torchvision)."""
    equal_masks, differences = 0, []
    for draw in range(count):
        ours, theirs = segkit[(draw % len(segkit), draw)], reference[(draw % len(reference), draw)]
        equal_masks += bool(torch.equal(ours["mask"], theirs["mask"]))
        differences.append(float((ours["image"] - theirs["image"]).abs().mean()))
    return {
        "samples": count,
        "equal_masks": equal_masks,
        "mean_abs_image_difference": float(np.mean(differences)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds: fewer images, shorter rounds"
    )
    parser.add_argument(
        "--images", type=int, default=None, help="JPEGs to make (default 48; quick 8)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="seconds per round (default 8; quick 0.5)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternating rounds per pipeline (default 3; quick 1)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="also time N DataLoader workers (default 2; quick 0 = skip)",
    )
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/data_pipeline.json)"
    )
    args = parser.parse_args(argv)
    images = args.images or (8 if args.quick else 48)
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 8.0)
    rounds = args.rounds or (1 if args.quick else 3)
    workers = args.workers if args.workers is not None else (0 if args.quick else 2)
    torch.set_num_threads(1)  # as in a DataLoader worker

    with tempfile.TemporaryDirectory() as folder:
        root = make_images(Path(folder), images)
        ade = build("dataset", {"type": "ade20k", "root": str(root), "split": "training"})
        segkit = TransformedDataset(ade, [build("transform", spec) for spec in RECIPE], seed=0)
        reference = ReferencePipeline([(p.image, p.mask) for p in ade.pairs], seed=0)
        pipelines = {"reference (PIL + torchvision)": reference, "segkit": segkit}
        agree = agreement(segkit, reference, min(images, 8))  # also the warm-up

        rates = {name: [] for name in pipelines}
        for _ in range(rounds):
            for name, dataset in pipelines.items():
                rates[name].append(per_worker_rate(dataset, images, seconds))
        loader = {}
        if workers > 0:
            for name, dataset in pipelines.items():
                loader[name] = loader_rate(dataset, workers, batches=max(4, int(seconds * 4)))

    results = {
        name: {
            "images_per_s_per_worker": float(np.median(values)),
            "rounds": values,
            **({f"images_per_s_{workers}_workers": loader[name]} if name in loader else {}),
        }
        for name, values in rates.items()
    }
    reference_rate, segkit_rate = (results[name]["images_per_s_per_worker"] for name in pipelines)
    report = {
        "settings": {
            "images": images,
            "sizes": ADE_SIZES,
            "seconds_per_round": seconds,
            "rounds": rounds,
            "workers": workers,
            "recipe": RECIPE,
        },
        "versions": {
            "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "results": results,
        "speedup": segkit_rate / reference_rate,
        "agreement": agree,
    }
    header = ["pipeline", "images/s per worker"] + (
        [f"images/s, {workers} workers"] if loader else []
    )
    rows = [
        [name, result["images_per_s_per_worker"]]
        + ([result[f"images_per_s_{workers}_workers"]] if loader else [])
        for name, result in results.items()
    ]
    tables = "\n".join(
        [
            format_table(header, rows),
            f"\nspeed-up per worker: {report['speedup']:.2f}x",
            f"same draws, same results: {agree['equal_masks']}/{agree['samples']} masks equal, mean image "
            f"difference {agree['mean_abs_image_difference']:.3f} (normalised units)",
        ]
    )
    print(tables)
    out = write_results("data_pipeline", report, tables, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
