"""The edgemnv2 serial protocol: frames and messages, exactly as specified in docs/protocol.md.

Pure Python (stdlib only). This file is copied verbatim next to the Linux agent on a Raspberry Pi or
Coral Dev Board, so it imports nothing from edgemnv2; errors are its own `ProtocolViolation`.

Wire format (all integers little-endian):
    frame = 0x00  COBS(body)  0x00
    body  = version:u8  type:u8  payload  crc32(version..payload):u32
COBS keeps 0x00 out of the encoded bytes, so every 0x00 ends a frame and a receiver resynchronises
at the next delimiter whatever garbage came before it; the leading 0x00 cuts off line noise sent
before the frame, and the CRC rejects corrupted or truncated frames.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import Any, Callable, ClassVar, TypeVar, Union

PROTOCOL_VERSION = 1
HEADER_BYTES = 2  # version, type
CRC_BYTES = 4
INPUT_HEADER_BYTES = 12  # id, offset, total
HASH_BYTES = 32  # SHA-256 of the .tflite file
BITS_PER_BYTE = 10  # 8N1 UART: start + 8 data + stop

# What a host accepts in INFO (docs/protocol.md §2): anything else is a broken or foreign firmware.
MAX_WINDOW = 255  # window is a u8; 0 would mean the host may never send
MAX_INPUT_SLOTS = 16
MIN_PAYLOAD, MAX_PAYLOAD = 64, 1 << 24
RUNTIMES = ("tflm", "litert", "tflite_runtime")  # before an optional "+delegate" suffix (litert+edgetpu)

# Message types: host -> board below 0x80, board -> host from 0x80.
HELLO, PING, RESET, INPUT, GET_RESULT, GET_MEMORY = 0x01, 0x02, 0x03, 0x10, 0x11, 0x12
INFO, ACK, RESULT, ERROR, PONG, MEMORY = 0x81, 0x82, 0x83, 0x84, 0x85, 0x86

# Error codes carried by ERROR messages.
ERR_BAD_CRC = 1  # a frame failed its CRC (or COBS) check; detail = 0
ERR_WRONG_SIZE = 2  # INPUT total differs from the input tensor; detail = expected bytes
ERR_MODEL_MISMATCH = 3  # HELLO named a model hash the board does not run
ERR_BUSY = 4  # no free input slot, or GET_RESULT for an input still being computed
ERR_SEQUENCE = 5  # INPUT offset is not the next expected one; detail = expected offset
ERR_UNKNOWN_ID = 6  # GET_RESULT for an id the board has no result for
ERR_RUNTIME = 7  # the interpreter failed on this input; message says why
ERR_UNSUPPORTED = 8  # unknown message type or protocol version; detail = the type or version
ERR_MALFORMED = 9  # CRC fine but the payload does not parse; detail = message type
ERR_TOO_LARGE = 10  # INPUT chunk longer than max_payload; detail = max_payload

ERROR_NAMES = {
    ERR_BAD_CRC: "bad_crc", ERR_WRONG_SIZE: "wrong_size", ERR_MODEL_MISMATCH: "model_mismatch",
    ERR_BUSY: "busy", ERR_SEQUENCE: "sequence", ERR_UNKNOWN_ID: "unknown_id", ERR_RUNTIME: "runtime",
    ERR_UNSUPPORTED: "unsupported", ERR_MALFORMED: "malformed", ERR_TOO_LARGE: "too_large",
}

# Tensor element types (our own codes: TFLite's schema and C enums disagree with each other).
DTYPE_INT8, DTYPE_UINT8, DTYPE_INT16, DTYPE_INT32, DTYPE_FLOAT32 = 1, 2, 3, 4, 5
DTYPE_NAMES = {DTYPE_INT8: "int8", DTYPE_UINT8: "uint8", DTYPE_INT16: "int16", DTYPE_INT32: "int32",
               DTYPE_FLOAT32: "float32"}
DTYPE_CODES = {name: code for code, name in DTYPE_NAMES.items()}
DTYPE_SIZES = {DTYPE_INT8: 1, DTYPE_UINT8: 1, DTYPE_INT16: 2, DTYPE_INT32: 4, DTYPE_FLOAT32: 4}

# INFO flags
FLAG_LAYER_TIMES = 0x01  # RESULT may carry per-layer times
FLAG_TOPK = 0x02  # RESULT carries top-k instead of the raw output tensor
FLAG_MEMORY = 0x04  # the board answers GET_MEMORY with the RAM it measured itself (MEMORY)

RESULT_RAW, RESULT_TOPK = 0, 1


class ProtocolViolation(ValueError):
    """Bytes that do not form a valid frame or message."""


# ---------------------------------------------------------------------------------------------- CRC, COBS

def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (zlib, Ethernet): poly 0x04C11DB7 reflected, init and xorout 0xFFFFFFFF."""
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: no 0x00 in the output, at most 1 extra byte per 254."""
    out = bytearray()
    pieces = bytes(data).split(b"\x00")
    last_index = len(pieces) - 1
    for index, piece in enumerate(pieces):
        start = 0
        while len(piece) - start >= 254:
            out.append(0xFF)
            out += piece[start:start + 254]
            start += 254
        rest = len(piece) - start
        if index == last_index and rest == 0 and start > 0:
            break  # data ends exactly on a full 254-byte block: no trailing empty block
        out.append(rest + 1)
        out += piece[start:]
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of `cobs_encode`; raises ProtocolViolation on a zero byte or a truncated block."""
    out = bytearray()
    n = len(data)
    i = 0
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolViolation("COBS: zero byte inside a frame")
        end = i + code
        if end > n:
            raise ProtocolViolation("COBS: block runs past the end of the frame")
        block = data[i + 1:end]
        if 0 in block:
            raise ProtocolViolation("COBS: zero byte inside a frame")
        out += block
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def cobs_max_encoded(n: int) -> int:
    """Worst-case COBS length of n bytes."""
    return n + n // 254 + 1


# ---------------------------------------------------------------------------------------------- frames

@dataclasses.dataclass(frozen=True)
class Frame:
    """A frame that passed COBS, version and CRC checks."""

    type: int
    payload: bytes


@dataclasses.dataclass(frozen=True)
class FrameFault:
    """A delimited chunk of bytes that is not a valid frame (kind: cobs, short, crc, version, oversize)."""

    kind: str
    detail: int = 0
    length: int = 0


def encode_frame(msg_type: int, payload: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    """Wire bytes of one frame, both 0x00 delimiters included."""
    body = bytes((version, msg_type)) + payload
    body += struct.pack("<I", crc32(body))
    return b"\x00" + cobs_encode(body) + b"\x00"


def decode_body(encoded: bytes) -> Frame | FrameFault:
    """Check one delimited frame (without its 0x00): COBS, length, CRC, version."""
    try:
        body = cobs_decode(encoded)
    except ProtocolViolation:
        return FrameFault("cobs", length=len(encoded))
    if len(body) < HEADER_BYTES + CRC_BYTES:
        return FrameFault("short", length=len(encoded))
    (crc,) = struct.unpack_from("<I", body, len(body) - CRC_BYTES)
    if crc32(body[:-CRC_BYTES]) != crc:
        return FrameFault("crc", length=len(encoded))
    if body[0] != PROTOCOL_VERSION:
        return FrameFault("version", detail=body[0], length=len(encoded))
    return Frame(body[1], bytes(body[HEADER_BYTES:-CRC_BYTES]))


class FrameDecoder:
    """Incremental decoder: feed any bytes, get frames and faults; never raises, memory is bounded.

    `max_frame` bounds the encoded length of one frame; a longer run without a delimiter is dropped
    (reported once as an `oversize` fault) and decoding resumes after the next 0x00.
    """

    def __init__(self, max_frame: int = 1 << 20) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame | FrameFault]:
        events: list[Frame | FrameFault] = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:], events)
                return events
            self._append(data[start:end], events)
            if self._discarding:
                self._discarding = False
            elif self._buffer:
                events.append(decode_body(bytes(self._buffer)))
            self._buffer.clear()
            start = end + 1

    def reset(self) -> None:
        """Forget any partial frame (after a board reset or a port reopen)."""
        self._buffer.clear()
        self._discarding = False

    def _append(self, chunk: bytes, events: list[Frame | FrameFault]) -> None:
        if self._discarding or not chunk:
            return
        if len(self._buffer) + len(chunk) > self.max_frame:
            events.append(FrameFault("oversize", length=len(self._buffer) + len(chunk)))
            self._buffer.clear()
            self._discarding = True
            return
        self._buffer += chunk


# ---------------------------------------------------------------------------------------------- messages

def _pack_str(text: str) -> bytes:
    raw = text.encode("utf-8")[:255]
    return bytes((len(raw),)) + raw


class _Reader:
    """Bounds-checked cursor over a payload; any overrun is a ProtocolViolation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProtocolViolation(f"payload too short ({len(self.data)} bytes)")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ProtocolViolation(f"payload too short ({len(self.data)} bytes)")
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return bytes(out)

    def string(self) -> str:
        (length,) = self.take("<B")
        try:
            return self.raw(length).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolViolation("string is not UTF-8") from exc

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return bytes(out)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolViolation(f"{len(self.data) - self.pos} unexpected trailing bytes")


_F = TypeVar("_F", bound="_Fixed")


class _Fixed:
    """A message whose payload is its fields in order, one LAYOUT code per field (a struct code, little-endian,
    or one of _PARTS below; empty for a message without fields): one pack and one unpack serve every such
    message, and each layout is written once."""

    LAYOUT: ClassVar[tuple[str, ...]] = ()

    def pack(self) -> bytes:
        values = (getattr(self, f.name) for f in dataclasses.fields(self))
        return b"".join(_PARTS[code][0](v) if code in _PARTS else struct.pack("<" + code, v)
                        for code, v in zip(self.LAYOUT, values))

    @classmethod
    def unpack(cls: type[_F], payload: bytes) -> _F:
        r = _Reader(payload)
        values = [_PARTS[code][1](r) if code in _PARTS else r.take("<" + code)[0] for code in cls.LAYOUT]
        r.end()
        return cls(*values)


@dataclasses.dataclass(frozen=True)
class TensorDesc:
    """Shape, element type and affine quantization of the model's input or output tensor."""

    dtype: str
    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * DTYPE_SIZES[DTYPE_CODES[self.dtype]]

    def pack(self) -> bytes:
        if self.dtype not in DTYPE_CODES:
            raise ProtocolViolation(f"dtype {self.dtype!r} is not one of {sorted(DTYPE_CODES)}")
        return (struct.pack("<BB", DTYPE_CODES[self.dtype], len(self.shape))
                + struct.pack(f"<{len(self.shape)}I", *self.shape)
                + struct.pack("<fi", self.scale, self.zero_point))

    @classmethod
    def read(cls, reader: _Reader) -> "TensorDesc":
        code, rank = reader.take("<BB")
        if code not in DTYPE_NAMES:
            raise ProtocolViolation(f"unknown dtype code {code}")
        if rank > 8:
            raise ProtocolViolation(f"tensor rank {rank} > 8")
        shape = reader.take(f"<{rank}I")
        scale, zero_point = reader.take("<fi")
        return cls(DTYPE_NAMES[code], tuple(shape), scale, zero_point)


def _pack_hash(digest: bytes) -> bytes:
    if len(digest) != HASH_BYTES:
        raise ProtocolViolation("model_sha256 must be 32 bytes")
    return bytes(digest)


# The LAYOUT codes besides struct's, each with its pack and its read: the model's SHA-256, a u8-length UTF-8
# string, a TensorDesc, the rest of the payload.
_HASH, _STR, _TENSOR, _REST = "hash", "str", "tensor", "rest"
_PARTS: dict[str, tuple[Callable[[Any], bytes], Callable[[_Reader], Any]]] = {
    _HASH: (_pack_hash, lambda r: r.raw(HASH_BYTES)), _STR: (_pack_str, _Reader.string),
    _TENSOR: (TensorDesc.pack, TensorDesc.read), _REST: (bytes, _Reader.rest)}


@dataclasses.dataclass(frozen=True)
class Hello(_Fixed):
    """Host asks for INFO; model_sha256 all-zero means 'any model'."""

    TYPE: ClassVar[int] = HELLO
    LAYOUT: ClassVar[tuple[str, ...]] = ("B", _HASH)
    version: int = PROTOCOL_VERSION
    model_sha256: bytes = bytes(HASH_BYTES)


@dataclasses.dataclass(frozen=True)
class Ping(_Fixed):
    TYPE: ClassVar[int] = PING
    LAYOUT: ClassVar[tuple[str, ...]] = ("I",)
    token: int


@dataclasses.dataclass(frozen=True)
class Reset(_Fixed):
    """Host asks the board to restart; the board answers with INFO carrying a new boot nonce."""

    TYPE: ClassVar[int] = RESET


@dataclasses.dataclass(frozen=True)
class Input(_Fixed):
    """One chunk of a quantized input tensor; the chunk that completes `total` bytes starts inference."""

    TYPE: ClassVar[int] = INPUT
    LAYOUT: ClassVar[tuple[str, ...]] = ("I", "I", "I", _REST)
    id: int
    offset: int
    total: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class GetResult(_Fixed):
    """Host asks the board to send the RESULT for `id` again (the first copy was lost)."""

    TYPE: ClassVar[int] = GET_RESULT
    LAYOUT: ClassVar[tuple[str, ...]] = ("I",)
    id: int


@dataclasses.dataclass(frozen=True)
class Info(_Fixed):
    """The handshake: what the board is, what it runs, and how much the host may send at once."""

    TYPE: ClassVar[int] = INFO
    LAYOUT: ClassVar[tuple[str, ...]] = ("B", "B", "B", "B", "I", "I", "I", "I", _HASH, _STR, _STR, _TENSOR, _TENSOR)
    version: int
    flags: int
    input_slots: int
    window: int
    max_payload: int
    boot_nonce: int
    cpu_hz: int
    arena_bytes: int
    model_sha256: bytes
    board_name: str
    runtime: str
    input: TensorDesc
    output: TensorDesc


@dataclasses.dataclass(frozen=True)
class Ack(_Fixed):
    """Cumulative acknowledgement: the board holds bytes [0, next_offset) of input `id`."""

    TYPE: ClassVar[int] = ACK
    LAYOUT: ClassVar[tuple[str, ...]] = ("I", "I")
    id: int
    next_offset: int


@dataclasses.dataclass(frozen=True)
class Result:
    """One inference: raw quantized output (or top-k), 64-bit cycles and µs, CRC of the input received."""

    TYPE: ClassVar[int] = RESULT
    id: int
    boot_nonce: int
    input_crc32: int
    cycles: int
    micros: int
    output: bytes = b""
    layer_us: tuple[int, ...] = ()
    topk: tuple[tuple[int, int], ...] | None = None  # (class index, raw quantized value)

    def pack(self) -> bytes:
        kind = RESULT_RAW if self.topk is None else RESULT_TOPK
        head = struct.pack("<IIIQQBH", self.id, self.boot_nonce, self.input_crc32, self.cycles,
                           self.micros, kind, len(self.layer_us))
        head += struct.pack(f"<{len(self.layer_us)}I", *self.layer_us)
        if self.topk is None:
            return head + self.output
        return head + struct.pack("<H", len(self.topk)) + b"".join(
            struct.pack("<Ii", index, value) for index, value in self.topk)

    @classmethod
    def unpack(cls, payload: bytes) -> "Result":
        r = _Reader(payload)
        ident, nonce, crc, cycles, micros, kind, n_layers = r.take("<IIIQQBH")
        layers = r.take(f"<{n_layers}I")
        if kind == RESULT_RAW:
            return cls(ident, nonce, crc, cycles, micros, r.rest(), tuple(layers))
        if kind != RESULT_TOPK:
            raise ProtocolViolation(f"unknown result kind {kind}")
        (k,) = r.take("<H")
        topk = tuple(r.take("<Ii") for _ in range(k))
        r.end()
        return cls(ident, nonce, crc, cycles, micros, b"", tuple(layers), topk)


@dataclasses.dataclass(frozen=True)
class Error(_Fixed):
    TYPE: ClassVar[int] = ERROR
    LAYOUT: ClassVar[tuple[str, ...]] = ("B", "I", "I", "I", _STR)
    code: int
    boot_nonce: int
    id: int = 0
    detail: int = 0
    message: str = ""

    @property
    def name(self) -> str:
        return ERROR_NAMES.get(self.code, f"error_{self.code}")


@dataclasses.dataclass(frozen=True)
class Pong(_Fixed):
    TYPE: ClassVar[int] = PONG
    LAYOUT: ClassVar[tuple[str, ...]] = ("I", "I")
    token: int
    boot_nonce: int


@dataclasses.dataclass(frozen=True)
class GetMemory(_Fixed):
    """Host asks for the RAM the board measured (boards whose INFO sets FLAG_MEMORY)."""

    TYPE: ClassVar[int] = GET_MEMORY


@dataclasses.dataclass(frozen=True)
class Memory(_Fixed):
    """RAM measured on the board: the arena and the stack were painted with a pattern and the high-water
    marks read back, so these are what ran, not what was planned."""

    TYPE: ClassVar[int] = MEMORY
    LAYOUT: ClassVar[tuple[str, ...]] = ("I",) * 7
    boot_nonce: int
    arena_bytes: int  # the static arena
    arena_peak: int  # highest arena byte written + 1, over every inference since boot
    stack_peak: int  # deepest stack the model's invoke reached below its caller's frame
    stack_boot_peak: int  # deepest stack of the whole firmware since boot
    stack_region: int  # bytes of stack painted and checked
    inferences: int  # inferences the peaks cover


Message = Union[Hello, Ping, Reset, Input, GetResult, GetMemory, Info, Ack, Result, Error, Pong, Memory]
MESSAGE_TYPES: dict[int, type] = {cls.TYPE: cls for cls in
                                  (Hello, Ping, Reset, Input, GetResult, GetMemory, Info, Ack, Result, Error, Pong,
                                   Memory)}


def encode(msg: Message) -> bytes:
    """Wire bytes of one message (frame with delimiter)."""
    return encode_frame(msg.TYPE, msg.pack())


def decode(frame: Frame) -> Message:
    """Parse a checked frame into its message; ProtocolViolation if unknown or malformed."""
    cls = MESSAGE_TYPES.get(frame.type)
    if cls is None:
        raise ProtocolViolation(f"unknown message type 0x{frame.type:02x}")
    return cls.unpack(frame.payload)


# ---------------------------------------------------------------------------------------------- sizes, timing

def frame_wire_bytes(payload_len: int) -> int:
    """Worst-case wire bytes of a frame carrying `payload_len` payload bytes (COBS + 2 delimiters)."""
    return cobs_max_encoded(HEADER_BYTES + payload_len + CRC_BYTES) + 2


def wire_seconds(nbytes: int, baud: int) -> float:
    """Time the bytes take on an 8N1 UART at `baud`."""
    return nbytes * BITS_PER_BYTE / baud


def ack_timeout(baud: int, max_payload: int, window: int, margin_s: float = 0.5) -> float:
    """How long the host waits for an ACK: the window's frames there, the ACK back, twice, plus a margin."""
    in_flight = window * frame_wire_bytes(INPUT_HEADER_BYTES + max_payload) + frame_wire_bytes(8)
    return 2 * wire_seconds(in_flight, baud) + margin_s
