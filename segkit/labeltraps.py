"""Label encodings that load without an error and train to nonsense, recognised from mask values.

A binary mask stored as 0/255 reads as one class plus "ignore" (255) and trains to a perfect,
meaningless score; masks numbered 1..N with 0 as "unlabelled" (what MMSegmentation's
``reduce_zero_label`` undoes) are off by one; a class that never occurs cannot be learned. Each
is recognised from the values stored in the mask files, before any label map, together with
what the dataset makes of them, and comes with the config lines that fix it.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from segkit.errors import SampleError
from segkit.label_map import IGNORE_INDEX

# Masks the start of training reads to look for these traps: enough to see an encoding,
# few enough that start-up stays fast on any dataset.
TRAINING_SAMPLE = 32


@dataclass(frozen=True)
class Finding:
    """One trap: what was seen, the YAML lines that fix it (if known), and whether
    ``segkit data check`` fails on it."""

    message: str
    snippet: str | None = None
    fatal: bool = False

    def render(self, indent: str = "  ") -> str:
        lines = [f"{indent}{self.message}"]
        if self.snippet:
            lines.append(f"{indent}  paste into the dataset's section (data.train, data.val):")
            lines += [f"{indent}    {line}" for line in self.snippet.splitlines()]
        return "\n".join(lines)


def value_counts(values: np.ndarray) -> Counter:
    """Pixels per stored mask value."""
    flat = np.asarray(values).ravel()
    if flat.dtype == np.uint8:
        counts = np.bincount(flat, minlength=256)
        present = np.flatnonzero(counts)
        return Counter(dict(zip(present.tolist(), counts[present].tolist())))
    found, counts = np.unique(flat, return_counts=True)
    return Counter(dict(zip(found.tolist(), counts.tolist())))


def class_counts(stored: Mapping[int, int], table: np.ndarray | None, count: int) -> np.ndarray:
    """Pixels per class (0..count-1) and ignored (index 255) that the stored values become
    through the dataset's lookup table (None: the stored values are the classes already)."""
    pixels = np.zeros(256, dtype=np.int64)
    for value, pixels_of_value in stored.items():
        if table is None:
            target = value
        else:
            target = int(table[value]) if 0 <= value < len(table) else -1
        if 0 <= target < count or target == IGNORE_INDEX:
            pixels[target] += pixels_of_value
    return pixels


def find_traps(
    stored: Mapping[int, int], classes: Sequence[str], table: np.ndarray | None
) -> list[Finding]:
    """The traps in a dataset whose mask files hold ``stored`` (value -> pixels) and whose
    lookup table is ``table`` (None for colour masks, whose stored values are classes)."""
    count = len(classes)
    pixels = class_counts(stored, table, count)
    present = [c for c in range(count) if pixels[c]]
    values = sorted(v for v, n in stored.items() if n)
    findings: list[Finding] = []
    binary = table is not None and values == [0, 255] and not 0 < table[255] < count
    if binary:
        classes_line = "" if count == 2 else "classes: [background, foreground]\n"
        findings.append(
            Finding(
                "the masks hold only 0 and 255: a binary mask saved as 0/255. 255 means "
                "'ignore', so every labelled pixel is class 0 and training reaches a fake "
                "100% mIoU; map 255 to class 1"
                + ("" if count == 2 else " (and set model.num_classes: 2)"),
                classes_line + "label_map: {0: 0, 255: 1}\nignore_index: null",
                fatal=True,
            )
        )
    shifted = _shifted(values, table, count)
    if shifted is not None:
        findings.append(shifted)
    if not binary and shifted is None and len(present) == 1 and count > 1:
        findings.append(
            Finding(
                f"only one class occurs in the labels ({present[0]} '{classes[present[0]]}'): "
                "a model trained on them predicts it everywhere and scores a fake 100% mIoU; "
                "check the mask values (segkit data check --suggest IMAGES MASKS shows how "
                "they look)",
                fatal=True,
            )
        )
    absent = [c for c in range(count) if not pixels[c]]
    if not binary and shifted is None and present and absent and len(present) > 1:
        names = ", ".join(f"{c} '{classes[c]}'" for c in absent[:10])
        more = f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        findings.append(
            Finding(f"{len(absent)} class(es) never occur in these labels: {names}{more}")
        )
    return findings


def _shifted(values: list[int], table: np.ndarray | None, count: int) -> Finding | None:
    """Values 1..N for N classes (0 unlabelled, if present): the top value is no class."""
    labels = [v for v in values if v != IGNORE_INDEX]
    if table is None or not labels or labels[-1] != count or count < 1:
        return None
    if count < len(table) and table[count] >= 0:  # a label map makes N a class
        return None
    mapping = ", ".join(f"{v}: {v - 1}" for v in range(1, count + 1))
    zero = 0 in labels
    return Finding(
        f"the mask values run 1..{count} for {count} classes"
        + (" with 0 as well" if zero else "")
        + ": numbered from 1 (MMSegmentation's reduce_zero_label), "
        + ("0 most likely meaning 'unlabelled'" if zero else "one above the classes 0..N-1")
        + "; shift them down",
        f"label_map: {{{mapping}}}\nignore_index: {0 if zero else 'null'}",
    )


def check_training_labels(dataset) -> list[Finding]:
    """The traps in up to :data:`TRAINING_SAMPLE` masks spread over ``dataset``; only
    datasets of mask files (with ``stored_values``) can be looked at this cheaply."""
    stored_values = getattr(dataset, "stored_values", None)
    pairs = getattr(dataset, "pairs", None)
    if stored_values is None or not pairs:
        return []
    picks = np.unique(np.linspace(0, len(pairs) - 1, min(TRAINING_SAMPLE, len(pairs))).astype(int))
    stored: Counter = Counter()
    for index in picks:
        try:
            stored.update(value_counts(stored_values(pairs[index].mask)))
        except SampleError:
            continue  # reported when the sample is loaded
    if not stored:
        return []
    table = None if getattr(dataset, "colours", None) is not None else dataset.table
    return find_traps(stored, dataset.classes, table)


def warn_about_traps(dataset, split: str = "data.train") -> None:
    """The start of training: the traps of a sample of the masks as warnings on stderr."""
    for finding in check_training_labels(dataset):
        print(
            f"segkit: warning: {split} (a sample of the masks): "
            + finding.render(indent="").lstrip(),
            file=sys.stderr,
        )
    sys.stderr.flush()
