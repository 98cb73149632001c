"""Regenerate tests/vectors/protocol_vectors.json from edgemnv2/serial/protocol.py.

The JSON is the contract shared with the C implementation (firmware_templates/common); run this only
for an additive change and check `git diff` shows nothing but additions:
    python3 tests/serial/make_vectors.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "vectors" / "protocol_vectors.json"


def load_protocol():
    spec = importlib.util.spec_from_file_location("protocol", ROOT / "edgemnv2" / "serial" / "protocol.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["protocol"] = module
    spec.loader.exec_module(module)
    return module


def fields_of(msg) -> dict:
    """Message fields as JSON: bytes as hex, tensors as objects, tuples as lists."""
    def convert(value):
        if isinstance(value, bytes):
            return value.hex()
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value
    return {f.name: convert(getattr(msg, f.name)) for f in dataclasses.fields(msg)}


def build(p) -> dict:
    model_hash = hashlib.sha256(b"edgemnv2 test model").digest()
    t_in = p.TensorDesc("int8", (1, 96, 96, 3), 0.0078125, -1)
    t_out = p.TensorDesc("int8", (1, 1000), 0.00390625, -128)
    messages = [
        ("hello_any_model", p.Hello()),
        ("hello_with_hash", p.Hello(1, model_hash)),
        ("ping", p.Ping(0xDEADBEEF)),
        ("reset", p.Reset()),
        ("input_small_chunk", p.Input(7, 0, 6, bytes([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x00]))),
        ("input_second_chunk", p.Input(7, 4096, 27648, bytes(range(1, 17)))),
        ("get_result", p.GetResult(42)),
        ("info_mnv2_96", p.Info(1, 0, 2, 4, 16384, 0x12345678, 480_000_000, 421_888, model_hash,
                                "board-sim", "tflm", t_in, t_out)),
        ("info_float_uint8", p.Info(1, p.FLAG_LAYER_TIMES | p.FLAG_TOPK, 1, 1, 512, 1, 0, 0, bytes(32),
                                    "nano33", "tflm",
                                    p.TensorDesc("uint8", (1, 4), 0.5, 128), p.TensorDesc("float32", (1, 2)))),
        ("ack", p.Ack(7, 4096)),
        ("result_raw", p.Result(7, 0x12345678, 0xCBF43926, 0x1_0000_0001, 123456,
                                bytes([0x80, 0x00, 0x7F, 0x01, 0xFF]))),
        ("result_layers", p.Result(8, 1, 0, 480_000_000 * 3, 3_000_000, bytes([0x05]), (100, 2000, 30000))),
        ("result_topk", p.Result(9, 1, 0xFFFFFFFF, 5, 1, b"", (), ((283, 120), (7, -5)))),
        ("error_bad_crc", p.Error(p.ERR_BAD_CRC, 0x12345678)),
        ("error_sequence", p.Error(p.ERR_SEQUENCE, 0x12345678, 7, 4096, "expected offset 4096")),
        ("error_wrong_size", p.Error(p.ERR_WRONG_SIZE, 1, 3, 27648, "input is 27648 bytes")),
        ("error_model_mismatch", p.Error(p.ERR_MODEL_MISMATCH, 1, 0, 0, "model hash differs")),
        ("error_busy", p.Error(p.ERR_BUSY, 1, 11, 0, "")),
        ("error_runtime", p.Error(p.ERR_RUNTIME, 1, 12, 0, "Invoke failed: é")),
        ("pong", p.Pong(0xDEADBEEF, 0x12345678)),
        ("get_memory", p.GetMemory()),
        ("memory", p.Memory(0x12345678, 83_520, 83_517, 240, 1_184, 16_384, 10)),
        ("info_static_engine", p.Info(1, p.FLAG_MEMORY, 1, 4, 16384, 7, 25_000_000, 83_520, model_hash,
                                      "mps2-an386", "tflm+static-patch", t_in, t_out)),
    ]
    vectors: dict = {
        "protocol_version": p.PROTOCOL_VERSION,
        "description": "Byte-level test vectors for docs/protocol.md. Hex strings are lowercase; frame_hex is the "
                       "complete wire frame including the leading and trailing 00 delimiters; payload_hex is the message "
                       "payload (between the type byte and the CRC).",
        "crc32": [{"input_hex": b.hex(), "crc32": p.crc32(b)} for b in
                  (b"", b"123456789", bytes(range(256)), bytes([1, 0x83]))],
        "cobs": [],
        "messages": [],
        "invalid_frames": [],
        "streams": [],
    }
    cobs_inputs = [b"", b"\x00", b"\x00\x00", b"\x00\x11\x00", b"\x11\x22\x00\x33", b"\x11\x22\x33\x44",
                   b"\x11\x00\x00\x00", bytes(range(1, 255)), bytes(range(0, 255)), bytes(range(1, 256)),
                   bytes(range(2, 256)) + b"\x00", bytes(range(3, 256)) + b"\x00\x01",
                   bytes([0x42]) * 254 + b"\x00", bytes([0x42]) * 508]
    for data in cobs_inputs:
        encoded = p.cobs_encode(data)
        assert p.cobs_decode(encoded) == data
        vectors["cobs"].append({"decoded_hex": data.hex(), "encoded_hex": encoded.hex()})
    for name, msg in messages:
        payload = msg.pack()
        frame = p.encode(msg)
        assert p.decode(p.FrameDecoder().feed(frame)[0]) == msg
        vectors["messages"].append({"name": name, "type": msg.TYPE, "message": type(msg).__name__,
                                    "fields": fields_of(msg), "payload_hex": payload.hex(),
                                    "frame_hex": frame.hex()})
    ping = p.encode(p.Ping(1))
    body = p.cobs_decode(ping[1:-1])
    flipped = bytearray(body)
    flipped[3] ^= 0x01
    wrong_version = bytes([2]) + body[1:-4]
    wrong_version += p.crc32(wrong_version).to_bytes(4, "little")
    invalid = [
        ("bad_crc", b"\x00" + p.cobs_encode(bytes(flipped)) + b"\x00", "crc"),
        ("truncated", ping[:-3] + b"\x00", "cobs"),
        ("too_short", b"\x00" + p.cobs_encode(b"\x01\x02\x03") + b"\x00", "short"),
        ("cobs_block_overrun", bytes([0x00, 0x05, 0x11, 0x22, 0x00]), "cobs"),
        ("wrong_version", b"\x00" + p.cobs_encode(wrong_version) + b"\x00", "version"),
    ]
    for name, frame, kind in invalid:
        events = p.FrameDecoder().feed(frame)
        assert len(events) == 1 and isinstance(events[0], p.FrameFault) and events[0].kind == kind, (name, events)
        vectors["invalid_frames"].append({"name": name, "frame_hex": frame.hex(), "fault": kind})
    ack = p.encode(p.Ack(1, 2))
    streams = [
        ("garbage_then_frame", b"\xff\x13\x37" + ping, None),
        ("extra_delimiters", b"\x00\x00" + ping + b"\x00" + ack, None),
        ("garbage_without_delimiter", b"\xff\x13\x37" + ping[1:], None),
        ("corrupt_between_good", ping + bytes(invalid[0][1]) + ack, None),
        ("dropped_byte_resync", ping[:5] + ping[6:] + ack, None),
        ("dropped_delimiter", ping[:-1] + ack, None),
        ("oversize_then_frame", b"\x01" * 40 + b"\x00" + ping, 32),
    ]
    for name, stream, max_frame in streams:
        decoder = p.FrameDecoder(max_frame or (1 << 20))
        events = decoder.feed(stream)
        expected = []
        for event in events:
            if isinstance(event, p.Frame):
                expected.append({"frame": {"type": event.type, "payload_hex": event.payload.hex()}})
            else:
                expected.append({"fault": event.kind})
        entry = {"name": name, "stream_hex": stream.hex(), "events": expected}
        if max_frame:
            entry["max_frame"] = max_frame
        vectors["streams"].append(entry)
    return vectors


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build(load_protocol()), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
