"""The exported firmware's C loop, built for the host (stdin/stdout as the UART, a checksum as the model), driven
by the Python protocol implementation: the two sides interoperate beyond the byte vectors."""

from __future__ import annotations

import hashlib
import json
import select
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgemnv2.deploy.export import ExportRequest, export_project
from edgemnv2.serial import protocol as p

HERE = Path(__file__).resolve().parent


class Pipe:
    """Frames to and from the firmware process, with a deadline on every read."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.decoder = p.FrameDecoder()
        self.pending: list = []

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def receive(self, timeout: float = 5.0):
        assert self.proc.stdout is not None
        while not self.pending:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            assert ready, "the firmware did not answer in time"
            chunk = self.proc.stdout.read1(65536)
            assert chunk, "the firmware exited"
            self.pending += self.decoder.feed(chunk)
        event = self.pending.pop(0)
        assert isinstance(event, p.Frame), f"bad frame from the firmware: {event}"
        return p.decode(event)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory, mcu_model: Path, gcc: str):
    project = tmp_path_factory.mktemp("hostfw") / "pico"
    export_project(ExportRequest(target="pico", model=mcu_model, out=project, arena_bytes=400_000))
    src = project / "src"
    exe = project / "firmware_host"
    sources = json.loads((project / "edgemnv2_project.json").read_text())["portable_sources"]
    subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-I", str(src), "-o", str(exe),
                    str(HERE / "host_board.c"), *[str(src / s) for s in sources]], check=True, timeout=120)
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    yield Pipe(proc)
    proc.stdin.close()
    proc.wait(timeout=10)


def test_python_host_talks_to_the_c_firmware(firmware: Pipe, mcu_model: Path) -> None:
    boot = firmware.receive()
    assert isinstance(boot, p.Info)  # unsolicited at boot
    digest = hashlib.sha256(mcu_model.read_bytes()).digest()
    firmware.send(p.encode(p.Hello(model_sha256=digest)))
    info = firmware.receive()
    assert isinstance(info, p.Info) and info.boot_nonce == boot.boot_nonce
    assert (info.board_name, info.runtime, info.model_sha256, info.arena_bytes) == ("pico", "tflm", digest, 400_000)
    assert info.input.dtype == "int8" and info.input.shape == (1, 128, 128, 3) and info.output.shape == (1, 1000)
    assert (info.input_slots, info.window, info.max_payload) == (1, 4, 2048)

    firmware.send(p.encode(p.Ping(0xC0FFEE)))
    assert firmware.receive() == p.Pong(0xC0FFEE, info.boot_nonce)

    rng = np.random.default_rng(7)
    for ident in range(3):
        image = rng.integers(-128, 128, size=info.input.nbytes, dtype=np.int8).tobytes()
        chunks = [image[o:o + info.max_payload] for o in range(0, len(image), info.max_payload)]
        # keep at most `window` frames unacknowledged, as the spec's host does
        acked, sent = 0, 0
        while acked < len(image):
            while sent < len(chunks) and sent - acked // info.max_payload < info.window:
                firmware.send(p.encode(p.Input(ident, sent * info.max_payload, len(image), chunks[sent])))
                sent += 1
            ack = firmware.receive()
            assert isinstance(ack, p.Ack) and ack.id == ident, ack
            acked = ack.next_offset
        result = firmware.receive()
        assert isinstance(result, p.Result) and result.id == ident and result.boot_nonce == info.boot_nonce
        assert result.input_crc32 == zlib.crc32(image)
        total = sum(np.frombuffer(image, np.uint8).tolist())
        assert result.output == bytes((total + i) & 0xFF for i in range(1000))

    # garbage on the line: ERROR bad_crc, and the next request is still answered
    firmware.send(b"\x13\x37\xfe\x00")
    error = firmware.receive()
    assert isinstance(error, p.Error) and error.code == p.ERR_BAD_CRC
    firmware.send(p.encode(p.GetResult(2)))
    again = firmware.receive()
    assert isinstance(again, p.Result) and again.id == 2
    firmware.send(p.encode(p.Reset()))
    reset = firmware.receive()
    assert isinstance(reset, p.Info) and reset.boot_nonce != info.boot_nonce
