"""Reads back what W&B wrote for an offline run (``run-<id>.wandb``), for the tracker tests.

The file is W&B's 7-byte header (``:W&B``, magic, version) followed by LevelDB log
records in 32 KiB blocks, each record a serialized ``wandb.proto.wandb_internal_pb2.Record``.
"""
import json
import struct
from typing import Any, Dict, Iterator, List

HEADER_LEN = 7
BLOCK_LEN = 32768
RECORD_HEADER_LEN = 7  # crc32c (4), length (2), chunk type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[bytes]:
    assert data[:4] == b":W&B", "not a W&B run file"
    position, pending = HEADER_LEN, b""
    while position + RECORD_HEADER_LEN <= len(data):
        left_in_block = BLOCK_LEN - position % BLOCK_LEN
        if left_in_block < RECORD_HEADER_LEN:  # the block's zero padding
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + RECORD_HEADER_LEN])
        position += RECORD_HEADER_LEN
        chunk = data[position:position + length]
        position += length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk


def read_offline_run(path) -> Dict[str, Any]:
    """``{"history": {step: {key: value}}, "config": {key: value}, "run_id": str}`` of an offline run file."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    history: Dict[int, Dict[str, Any]] = {}
    config: Dict[str, Any] = {}
    run_ids: List[str] = []
    for chunk in _chunks(data):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.setdefault(int(row["_step"]), {}).update(row)
        elif kind == "run":
            run_ids.append(record.run.run_id)
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    return {"history": history, "config": config, "run_id": run_ids[0] if run_ids else None}
