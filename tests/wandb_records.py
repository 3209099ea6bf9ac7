"""Read the records of an offline W&B run file (``run-ID.wandb``) for the tests: wandb 0.31 ships
no reader of its own. The file is a LevelDB-style log: a 7-byte header (``:W&B``, a magic
number, a version), then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32C, length,
type: full, first, middle or last), whose payloads join into serialized ``Record`` protos."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
FILE_HEADER = 7
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    found, pending, position = [], b"", FILE_HEADER
    while position + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < CHUNK_HEADER:  # the block's tail is padding
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + CHUNK_HEADER])
        payload = data[position + CHUNK_HEADER : position + CHUNK_HEADER + length]
        position += CHUNK_HEADER + length
        if kind in (FULL, FIRST):
            pending = payload
        elif kind in (MIDDLE, LAST):
            pending += payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            found.append(record)
    return found


def history(path: Path) -> dict[str, dict[int, float]]:
    """Every logged value: name -> {step: value}."""
    values: dict[str, dict[int, float]] = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            items = {
                item.key or "/".join(item.nested_key): item.value_json
                for item in record.history.item
            }
            step = int(json.loads(items.pop("_step")))
            for name, value in items.items():
                if not name.startswith("_"):
                    values.setdefault(name, {})[step] = json.loads(value)
    return values


def config(path: Path) -> dict:
    """The run's config as logged (top-level keys, values decoded): in the run record, and in
    config records for later changes."""
    found = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        updates = record.run.config.update if kind == "run" else record.config.update
        if kind in ("run", "config"):
            for item in updates:
                found[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return found


def summary(path: Path) -> dict:
    found = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                found[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return found
