"""Procedural outdoor scenes: a dataset that needs no files and trains in minutes on a CPU.

Each scene is drawn from (seed, split, index) alone: a sky above a wavy horizon, textured
ground below, and some of: a lake with ripples, a road with a dashed line running to the
horizon, buildings with windows standing on the horizon, trees, and a disc that is the sun when
it is in the sky and a ball when it lies on the ground. Colours vary per scene and noise covers
everything, so a network has to use texture, shape and position, not one colour per class; the
sun/ball pair can only be told apart from its surroundings.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch.utils.data import Dataset

CLASSES = ["sky", "ground", "water", "road", "building", "tree", "sun", "ball"]
PALETTE = [
    (70, 130, 180),
    (140, 100, 60),
    (30, 90, 200),
    (128, 64, 128),
    (70, 70, 70),
    (40, 150, 40),
    (250, 200, 30),
    (220, 20, 60),
]
SKY, GROUND, WATER, ROAD, BUILDING, TREE, SUN, BALL = range(len(CLASSES))


class Synthetic(Dataset):
    """Procedural outdoor scenes generated in memory (no files), deterministic by seed."""

    classes, palette = list(CLASSES), list(PALETTE)  # known before any scene is drawn

    def __init__(
        self,
        length: int = 256,
        size: tuple[int, int] = (128, 128),
        seed: int = 0,
        split: str = "train",
    ):
        """``length`` scenes of ``size`` [height, width]; ``split`` names an independent set
        (``train`` and ``val`` never share a scene)."""
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        if len(size) != 2 or min(size) < 16:
            raise ValueError(f"size must be [height, width], each at least 16, got {list(size)}")
        self.length = length
        self.size = (int(size[0]), int(size[1]))
        self.seed = seed
        self.split = split
        self._split_key = zlib.crc32(split.encode("utf-8"))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"scene {index} of a synthetic set of {self.length}")
        rng = np.random.default_rng([self.seed, self._split_key, index])
        image, mask = Scene(rng, *self.size).render()
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
            "mask": torch.from_numpy(mask).long(),
            "name": f"{self.split}_{index:06d}",
        }


class Scene:
    """One scene, painted back to front into a float RGB canvas and a class mask."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng = rng
        self.height, self.width = height, width
        self.y = ((np.arange(height) + 0.5) / height)[:, None]  # 0 at the top, 1 at the bottom
        self.x = ((np.arange(width) + 0.5) / width)[None, :]
        self.canvas = np.zeros((height, width, 3), dtype=np.float32)
        self.mask = np.zeros((height, width), dtype=np.uint8)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        self.sky_and_ground()
        if rng.random() < 0.5:
            self.lake()
        if rng.random() < 0.6:
            self.road()
        if rng.random() < 0.6:
            self.disc(SUN, in_sky=True)
        for _ in range(rng.integers(0, 4)):
            self.building()
        for _ in range(rng.integers(0, 4)):
            self.tree()
        if rng.random() < 0.6:
            self.disc(BALL, in_sky=False)
        self.canvas *= rng.uniform(0.85, 1.15)
        self.canvas += rng.standard_normal(self.canvas.shape, dtype=np.float32) * 6
        return np.clip(self.canvas, 0, 255).astype(np.uint8), self.mask

    def paint(self, region: np.ndarray, label: int, colour) -> None:
        """Give ``region`` a class and a colour (an RGB triple or an HxWx3 array)."""
        self.mask[region] = label
        colour = np.asarray(colour, dtype=np.float32)
        self.canvas[region] = colour[region] if colour.ndim == 3 else colour

    def grain(self, strength: float) -> np.ndarray:
        """Fine per-pixel texture, the same on all channels."""
        return self.rng.standard_normal((self.height, self.width, 1), dtype=np.float32) * strength

    def blotches(self, cell: int, strength: float) -> np.ndarray:
        """Coarse texture: random values on a grid of ``cell``-pixel squares."""
        rows, cols = self.height // cell + 1, self.width // cell + 1
        coarse = self.rng.standard_normal((rows, cols, 1), dtype=np.float32) * strength
        return coarse.repeat(cell, 0).repeat(cell, 1)[: self.height, : self.width]

    # ---- the parts of a scene --------------------------------------------------------------

    def sky_and_ground(self) -> None:
        rng = self.rng
        level = rng.uniform(0.35, 0.6)
        wave = rng.uniform(0, 0.04) * np.sin(
            2 * np.pi * (rng.uniform(0.5, 2) * self.x + rng.random())
        )
        self.horizon = level + wave  # 1 x W: the horizon's height in each column
        sky = self.y < self.horizon
        top = np.array([rng.uniform(20, 70), rng.uniform(60, 120), rng.uniform(150, 230)])
        low = np.array([rng.uniform(150, 210), rng.uniform(180, 225), rng.uniform(210, 250)])
        t = np.clip(self.y / self.horizon, 0, 1)[..., None]
        self.paint(sky, SKY, (1 - t) * top + t * low)
        earth = np.array([rng.uniform(110, 170), rng.uniform(80, 120), rng.uniform(40, 70)])
        ground = earth + self.grain(18) + self.blotches(8, 8)
        self.paint(~sky, GROUND, ground)

    def lake(self) -> None:
        rng = self.rng
        cy = rng.uniform(self.horizon.mean() + 0.12, 0.9)
        cx = rng.uniform(0.2, 0.8)
        ry, rx = rng.uniform(0.05, 0.12), rng.uniform(0.15, 0.35)
        region = ((self.y - cy) / ry) ** 2 + ((self.x - cx) / rx) ** 2 < 1
        region &= self.y > self.horizon + 0.02
        period = rng.uniform(3, 6)
        ripples = 18 * np.sin(
            2 * np.pi * (self.y * self.height / period + 0.3 * np.sin(9 * self.x))
        )
        colour = np.array([rng.uniform(20, 60), rng.uniform(70, 130), rng.uniform(150, 210)])
        self.paint(region, WATER, colour + ripples[..., None])

    def road(self) -> None:
        rng = self.rng
        bottom_x, half_width = rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
        vanish_x = rng.uniform(0.35, 0.65)
        top = self.horizon.mean()
        t = np.clip((self.y - top) / (1 - top), 0, 1)  # 0 at the horizon, 1 at the bottom
        centre = vanish_x + t * (bottom_x - vanish_x)
        half = 0.01 + t * half_width
        region = (np.abs(self.x - centre) < half) & (self.y > self.horizon)
        grey = rng.uniform(60, 110)
        colour = np.full((self.height, self.width, 3), grey, dtype=np.float32) + self.grain(6)
        dashes = (np.abs(self.x - centre) < 0.08 * half) & (np.sin(40 * np.sqrt(t + 1e-3)) > 0)
        colour[np.broadcast_to(dashes, region.shape)] = (230, 210, 90)
        self.paint(region, ROAD, colour)

    def disc(self, label: int, in_sky: bool) -> None:
        """The sun in the sky or a ball on the ground: the same look, told apart by context."""
        rng = self.rng
        radius = rng.uniform(0.06, 0.11)
        cx = rng.uniform(radius, 1 - radius)
        line = float(np.interp(cx, self.x[0], self.horizon[0]))
        if in_sky:
            low, high = radius + 0.02, line - radius - 0.03
        else:
            low, high = line + radius + 0.03, 1 - radius
        if high <= low:
            return
        cy = rng.uniform(low, high)
        distance = np.sqrt((self.y - cy) ** 2 + (self.x - cx) ** 2) / radius
        region = distance < 1
        if not in_sky:
            region &= self.y > self.horizon
        warm = np.array([rng.uniform(230, 255), rng.uniform(150, 220), rng.uniform(0, 60)])
        shade = (1 - 0.25 * distance)[..., None]
        self.paint(region, label, warm * shade)

    def building(self) -> None:
        rng = self.rng
        width, height = rng.uniform(0.08, 0.2), rng.uniform(0.12, 0.35)
        left = rng.uniform(0, 1 - width)
        base = float(np.interp(left + width / 2, self.x[0], self.horizon[0])) + 0.03
        region = (
            (self.x >= left) & (self.x < left + width) & (self.y < base) & (self.y >= base - height)
        )
        wall = np.array([rng.uniform(90, 190)] * 3) * np.array(
            [1.0, rng.uniform(0.85, 1.0), rng.uniform(0.7, 1.0)]
        )
        cell = int(rng.integers(5, 9))
        rows = (np.arange(self.height) % cell)[:, None]
        cols = (np.arange(self.width) % cell)[None, :]
        windows = (rows >= cell // 3) & (cols >= cell // 3)
        window_colour = np.array([40, 45, 60]) if rng.random() < 0.5 else np.array([240, 220, 130])
        colour = np.where(windows[..., None], window_colour, wall) + self.grain(4)
        self.paint(region, BUILDING, colour)

    def tree(self) -> None:
        rng = self.rng
        cx = rng.uniform(0.05, 0.95)
        line = float(np.interp(cx, self.x[0], self.horizon[0]))
        region = np.zeros((self.height, self.width), dtype=bool)
        for _ in range(rng.integers(2, 5)):
            radius = rng.uniform(0.05, 0.1)
            dy, dx = rng.uniform(-0.08, 0.02), rng.uniform(-0.07, 0.07)
            region |= (self.y - (line + dy)) ** 2 + (self.x - (cx + dx)) ** 2 < radius**2
        leaf = np.array([rng.uniform(20, 60), rng.uniform(90, 150), rng.uniform(20, 50)])
        colour = leaf + self.blotches(3, 20) * np.array([0.6, 1.0, 0.5]) + self.grain(8)
        self.paint(region, TREE, colour)
