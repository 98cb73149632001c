#!/usr/bin/env python3
"""Turn tests/vectors/protocol_vectors.json into a C header for test_protocol.c.

Why generate: the C and Python implementations must be checked against the SAME bytes; a
hand-copied header would drift from the JSON the Python tests read. Stdlib only, so the Makefile
can run it anywhere Python 3 is.

usage: gen_vectors.py VECTORS.json OUT.h
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

DTYPES = {"int8": "EMN_DTYPE_INT8", "uint8": "EMN_DTYPE_UINT8", "int16": "EMN_DTYPE_INT16",
          "int32": "EMN_DTYPE_INT32", "float32": "EMN_DTYPE_FLOAT32"}
FAULTS = {"cobs": "EMN_FAULT_COBS", "short": "EMN_FAULT_SHORT", "crc": "EMN_FAULT_CRC",
          "version": "EMN_FAULT_VERSION", "oversize": "EMN_FAULT_OVERSIZE"}
MESSAGE_TYPES = {"Hello": "EMN_HELLO", "Ping": "EMN_PING", "Reset": "EMN_RESET", "Input": "EMN_INPUT",
                 "GetResult": "EMN_GET_RESULT", "Info": "EMN_INFO", "Ack": "EMN_ACK", "Result": "EMN_RESULT",
                 "Error": "EMN_ERROR", "Pong": "EMN_PONG", "GetMemory": "EMN_GET_MEMORY", "Memory": "EMN_MEMORY"}


def c_bytes(data: bytes) -> str:
    """A C array initializer; a single 0 for empty data (C99 forbids empty initializers)."""
    if not data:
        return "{0}"
    return "{" + ",".join(f"0x{b:02x}" for b in data) + "}"


def c_string(data: bytes) -> str:
    """A C string literal with every byte as a 3-digit octal escape (hex escapes are greedy)."""
    return '"' + "".join(f"\\{b:03o}" for b in data) + '"'


def c_float(value: float) -> str:
    """Exact float: the vectors' scales are binary32 values, printed with enough digits to round-trip."""
    as_f32 = struct.unpack("<f", struct.pack("<f", value))[0]
    return f"{as_f32!r}f"


def emit_tensor(t: dict) -> str:
    dims = ",".join(f"{d}u" for d in t["shape"]) or "0"
    return (f"{{{DTYPES[t['dtype']]}, {len(t['shape'])}, {{{dims}}}, {c_float(t['scale'])}, "
            f"{t['zero_point']}}}")


def emit_fields(index: int, vec: dict, out: list[str]) -> str:
    """Writes the expected-fields struct of one message vector; returns its C expression (pointer)."""
    kind, f, name = vec["message"], vec["fields"], f"vf_{index}"
    if kind == "Hello":
        out.append(f"static const emn_hello {name} = {{{f['version']}, {c_bytes(bytes.fromhex(f['model_sha256']))}}};")
    elif kind == "Ping":
        out.append(f"static const emn_ping {name} = {{{f['token']}u}};")
    elif kind in ("Reset", "GetMemory"):
        return "NULL"
    elif kind == "Input":
        data = bytes.fromhex(f["data"])
        out.append(f"static const uint8_t {name}_data[] = {c_bytes(data)};")
        out.append(f"static const emn_input {name} = {{{f['id']}u, {f['offset']}u, {f['total']}u, "
                   f"{name}_data, {len(data)}u}};")
    elif kind == "GetResult":
        out.append(f"static const emn_get_result {name} = {{{f['id']}u}};")
    elif kind == "Info":
        board, runtime = f["board_name"].encode(), f["runtime"].encode()
        out.append(
            f"static const emn_info {name} = {{{f['version']}, {f['flags']}, {f['input_slots']}, {f['window']}, "
            f"{f['max_payload']}u, {f['boot_nonce']}u, {f['cpu_hz']}u, {f['arena_bytes']}u, "
            f"{c_bytes(bytes.fromhex(f['model_sha256']))}, {{{c_string(board)}, {len(board)}}}, "
            f"{{{c_string(runtime)}, {len(runtime)}}}, {emit_tensor(f['input'])}, {emit_tensor(f['output'])}}};")
    elif kind == "Ack":
        out.append(f"static const emn_ack {name} = {{{f['id']}u, {f['next_offset']}u}};")
    elif kind == "Result":
        layers = f["layer_us"]
        output = bytes.fromhex(f["output"])
        topk = f["topk"]
        out.append(f"static uint32_t {name}_layers[] = {{{','.join(f'{v}u' for v in layers) or '0'}}};")
        out.append(f"static const uint8_t {name}_output[] = {c_bytes(output)};")
        entries = ",".join(f"{{{i}u, {v}}}" for i, v in (topk or [])) or "{0u, 0}"
        out.append(f"static emn_topk_entry {name}_topk[] = {{{entries}}};")
        out.append(
            f"static const emn_result {name} = {{{f['id']}u, {f['boot_nonce']}u, {f['input_crc32']}u, "
            f"{f['cycles']}ull, {f['micros']}ull, {'EMN_RESULT_TOPK' if topk is not None else 'EMN_RESULT_RAW'}, "
            f"{len(layers)}, {name}_layers, {len(layers)}, {name}_output, {len(output)}u, "
            f"{len(topk or [])}, {name}_topk, {len(topk or [])}}};")
    elif kind == "Error":
        message = f["message"].encode()
        out.append(f"static const emn_error {name} = {{{f['code']}, {f['boot_nonce']}u, {f['id']}u, "
                   f"{f['detail']}u, {{{c_string(message)}, {len(message)}}}}};")
    elif kind == "Pong":
        out.append(f"static const emn_pong {name} = {{{f['token']}u, {f['boot_nonce']}u}};")
    elif kind == "Memory":
        out.append(f"static const emn_memory {name} = {{{f['boot_nonce']}u, {f['arena_bytes']}u, {f['arena_peak']}u, "
                   f"{f['stack_peak']}u, {f['stack_boot_peak']}u, {f['stack_region']}u, {f['inferences']}u}};")
    else:
        raise SystemExit(f"gen_vectors: unknown message kind {kind!r} in vector {vec['name']!r}")
    return f"&{name}"


def emit_table(out: list[str], typedefs: list[str], ctype: str, array: str, count: str, vectors: list[dict],
               entry) -> None:
    """One table of the header: its typedefs, each vector's byte arrays (`entry(i, v)` appends them to `out`
    and returns the vector's initializer), then the array of initializers and its count."""
    out += typedefs
    items = [entry(i, v) for i, v in enumerate(vectors)]
    out += [f"static const {ctype} {array}[] = {{{', '.join(items)}}};", f"#define {count} {len(items)}", ""]


def generate(vectors: dict) -> str:
    out = ["/* Generated by firmware_templates/common/gen_vectors.py from tests/vectors/protocol_vectors.json. */",
           "#ifndef EDGEMNV2_VECTORS_H_", "#define EDGEMNV2_VECTORS_H_", '#include "edgemnv2_protocol.h"',
           "#include <stddef.h>", "", f"#define VEC_PROTOCOL_VERSION {vectors['protocol_version']}", ""]

    def crc(i: int, v: dict) -> str:
        data = bytes.fromhex(v["input_hex"])
        out.append(f"static const uint8_t vcrc_{i}[] = {c_bytes(data)};")
        return f"{{vcrc_{i}, {len(data)}u, {v['crc32']}u}}"

    def cobs(i: int, v: dict) -> str:
        dec, enc = bytes.fromhex(v["decoded_hex"]), bytes.fromhex(v["encoded_hex"])
        out.append(f"static const uint8_t vcobs_d{i}[] = {c_bytes(dec)};")
        out.append(f"static const uint8_t vcobs_e{i}[] = {c_bytes(enc)};")
        return f"{{vcobs_d{i}, {len(dec)}u, vcobs_e{i}, {len(enc)}u}}"

    def message(i: int, v: dict) -> str:
        payload, frame = bytes.fromhex(v["payload_hex"]), bytes.fromhex(v["frame_hex"])
        out.append(f"static const uint8_t vmsg_p{i}[] = {c_bytes(payload)};")
        out.append(f"static const uint8_t vmsg_f{i}[] = {c_bytes(frame)};")
        fields = emit_fields(i, v, out)
        return (f'{{"{v["name"]}", {v["type"]}, {MESSAGE_TYPES[v["message"]]}, vmsg_p{i}, {len(payload)}u, '
                f"vmsg_f{i}, {len(frame)}u, {fields}}}")

    def invalid(i: int, v: dict) -> str:
        frame = bytes.fromhex(v["frame_hex"])
        out.append(f"static const uint8_t vinv_{i}[] = {c_bytes(frame)};")
        return f'{{"{v["name"]}", vinv_{i}, {len(frame)}u, {FAULTS[v["fault"]]}}}'

    def stream(i: int, v: dict) -> str:
        data = bytes.fromhex(v["stream_hex"])
        out.append(f"static const uint8_t vstr_{i}[] = {c_bytes(data)};")
        events = []
        for j, ev in enumerate(v["events"]):
            if "frame" in ev:
                payload = bytes.fromhex(ev["frame"]["payload_hex"])
                out.append(f"static const uint8_t vstr_{i}_p{j}[] = {c_bytes(payload)};")
                events.append(f"{{EMN_FRAME, {ev['frame']['type']}, vstr_{i}_p{j}, {len(payload)}u}}")
            else:
                events.append(f"{{{FAULTS[ev['fault']]}, 0, NULL, 0}}")
        out.append(f"static const vec_event vstr_{i}_ev[] = {{{', '.join(events)}}};")
        max_frame = v.get("max_frame", 0)  # 0: the test's own buffer size (the streams are short)
        return f'{{"{v["name"]}", vstr_{i}, {len(data)}u, {max_frame}u, vstr_{i}_ev, {len(events)}u}}'

    emit_table(out, ["typedef struct { const uint8_t *data; size_t len; uint32_t crc; } vec_crc;"],
               "vec_crc", "VEC_CRC", "VEC_CRC_COUNT", vectors["crc32"], crc)
    emit_table(out, ["typedef struct { const uint8_t *decoded; size_t decoded_len; const uint8_t *encoded; "
                     "size_t encoded_len; } vec_cobs;"],
               "vec_cobs", "VEC_COBS", "VEC_COBS_COUNT", vectors["cobs"], cobs)
    emit_table(out, ["typedef struct { const char *name; uint8_t type; uint8_t expected_type; const uint8_t *payload; "
                     "size_t payload_len; const uint8_t *frame; size_t frame_len; const void *fields; } vec_message;"],
               "vec_message", "VEC_MESSAGES", "VEC_MESSAGE_COUNT", vectors["messages"], message)
    emit_table(out, ["typedef struct { const char *name; const uint8_t *frame; size_t len; emn_event fault; } vec_invalid;"],
               "vec_invalid", "VEC_INVALID", "VEC_INVALID_COUNT", vectors["invalid_frames"], invalid)
    emit_table(out, ["typedef struct { emn_event event; uint8_t type; const uint8_t *payload; size_t payload_len; } "
                     "vec_event;",
                     "typedef struct { const char *name; const uint8_t *stream; size_t len; size_t max_frame; "
                     "const vec_event *events; size_t n_events; } vec_stream;"],
               "vec_stream", "VEC_STREAMS", "VEC_STREAM_COUNT", vectors["streams"], stream)
    out += ["#endif", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    source, target = Path(argv[1]), Path(argv[2])
    try:
        vectors = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        print(f"gen_vectors: cannot read {source}: {exc}", file=sys.stderr)
        return 1
    target.write_text(generate(vectors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
