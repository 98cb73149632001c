"""The Python protocol against the shared byte-level vectors, plus a seeded fuzz of the decoder."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from edgemnv2.serial import protocol as p

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "protocol_vectors.json").read_text())


def _from_fields(cls, fields: dict):
    """Build a message from the JSON `fields` (hex strings for bytes, objects for tensors)."""
    values = {}
    for name, value in fields.items():
        if isinstance(value, dict):
            value = p.TensorDesc(value["dtype"], tuple(value["shape"]), value["scale"], value["zero_point"])
        elif name in ("model_sha256", "data", "output"):
            value = bytes.fromhex(value)
        elif name == "layer_us":
            value = tuple(value)
        elif name == "topk" and value is not None:
            value = tuple(tuple(pair) for pair in value)
        values[name] = value
    return cls(**values)


def test_vectors_are_current() -> None:
    """The JSON equals what the generator produces now: the spec and the code have not drifted."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_vectors", Path(__file__).with_name("make_vectors.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build(p) == VECTORS


@pytest.mark.parametrize("case", VECTORS["crc32"], ids=lambda c: c["input_hex"][:12] or "empty")
def test_crc32(case) -> None:
    assert p.crc32(bytes.fromhex(case["input_hex"])) == case["crc32"]


@pytest.mark.parametrize("case", VECTORS["cobs"], ids=lambda c: c["decoded_hex"][:12] or "empty")
def test_cobs(case) -> None:
    decoded, encoded = bytes.fromhex(case["decoded_hex"]), bytes.fromhex(case["encoded_hex"])
    assert p.cobs_encode(decoded) == encoded
    assert p.cobs_decode(encoded) == decoded
    assert 0 not in encoded


@pytest.mark.parametrize("case", VECTORS["messages"], ids=lambda c: c["name"])
def test_message_encode_decode(case) -> None:
    cls = p.MESSAGE_TYPES[case["type"]]
    assert cls.__name__ == case["message"]
    msg = _from_fields(cls, case["fields"])
    assert msg.pack().hex() == case["payload_hex"]
    assert p.encode(msg).hex() == case["frame_hex"]
    events = p.FrameDecoder().feed(bytes.fromhex(case["frame_hex"]))
    assert len(events) == 1 and isinstance(events[0], p.Frame)
    assert p.decode(events[0]) == msg


@pytest.mark.parametrize("case", VECTORS["invalid_frames"], ids=lambda c: c["name"])
def test_invalid_frames_rejected(case) -> None:
    events = p.FrameDecoder().feed(bytes.fromhex(case["frame_hex"]))
    assert [getattr(e, "kind", None) for e in events] == [case["fault"]]


@pytest.mark.parametrize("case", VECTORS["streams"], ids=lambda c: c["name"])
@pytest.mark.parametrize("split", [None, 1, 3])
def test_streams(case, split) -> None:
    """Same events whether the stream arrives at once or a few bytes at a time."""
    decoder = p.FrameDecoder(case.get("max_frame", 1 << 20))
    stream = bytes.fromhex(case["stream_hex"])
    chunks = [stream] if split is None else [stream[i:i + split] for i in range(0, len(stream), split)]
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    got = [{"frame": {"type": e.type, "payload_hex": e.payload.hex()}} if isinstance(e, p.Frame)
           else {"fault": e.kind} for e in events]
    assert got == case["events"]


def test_malformed_payloads_raise_protocol_violation() -> None:
    with pytest.raises(p.ProtocolViolation):
        p.decode(p.Frame(p.ACK, b"\x01\x02"))
    with pytest.raises(p.ProtocolViolation):
        p.decode(p.Frame(0x7E, b""))
    with pytest.raises(p.ProtocolViolation):
        p.decode(p.Frame(p.PING, b"\x00" * 5))


def test_ack_timeout_grows_with_payload_and_shrinks_with_baud() -> None:
    slow = p.ack_timeout(115200, 16384, 4)
    fast = p.ack_timeout(921600, 16384, 4)
    assert slow > fast > 0.5
    assert p.wire_seconds(92160, 921600) == pytest.approx(1.0)


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            del data[min(pos, len(data) - 1)]
        elif op == 2:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            data = data[:pos]
    return bytes(data)


def test_fuzz_decoder_never_crashes_or_hangs() -> None:
    """12,000 random and mutated frames through one decoder: only Frames/FrameFaults, no exception but
    ProtocolViolation from message parsing, bounded time, and a valid frame after the noise still decodes."""
    rng = random.Random(20261125)
    seeds = [bytes.fromhex(case["frame_hex"]) for case in VECTORS["messages"]]
    decoder = p.FrameDecoder(max_frame=4096)
    start = time.monotonic()
    delivered = 0
    for i in range(12_000):
        if i % 3 == 0:
            blob = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            blob = _mutate(rng, rng.choice(seeds))
        for event in decoder.feed(blob):
            assert isinstance(event, (p.Frame, p.FrameFault))
            if isinstance(event, p.Frame):
                delivered += 1
                try:
                    p.decode(event)
                except p.ProtocolViolation:
                    pass
    assert time.monotonic() - start < 60
    tail = decoder.feed(p.encode(p.Ping(99)))
    assert p.Ping(99) in [p.decode(e) for e in tail if isinstance(e, p.Frame)]
    assert delivered > 0
