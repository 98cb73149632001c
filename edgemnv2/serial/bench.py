"""Stream images to a board, collect its on-device timings and raw outputs, compare with the host.

Data flow: images → (edgemnv2.data, edgemnv2.runtime: preprocess + quantize exactly like the host
reference) → `Streamer` (the host half of docs/protocol.md: windowed chunk upload, two input slots,
retries, reset detection) → one JSONL line per result as it arrives → `BenchReport`.
Every output is compared with a host run of the same model under the runtime the board names in its
handshake (TFLite Micro in a child process, or LiteRT).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgemnv2 import atomic
from edgemnv2.errors import BoardError, InputError, ModelError, RuntimeUnavailable
from edgemnv2.profile.devices import DeviceProfile
from edgemnv2.profile.graph import ModelGraph
from edgemnv2.profile.measured import LayerTable, layer_table, render_layer_table
from edgemnv2.serial import protocol as p
from edgemnv2.serial.transport import Transport, port_lock

log = logging.getLogger(__name__)

RESULTS_KIND = "edgemnv2-bench-results"  # the first line of a results file says what it was written for
RESULTS_SCHEMA_VERSION = 1
WARMUP_ID_BASE = 0xFFFF0000  # ids of warm-up inferences: never written to the JSONL
FATAL_ERRORS = {p.ERR_WRONG_SIZE: "refused the input size", p.ERR_UNSUPPORTED: "does not support a message",
                p.ERR_MALFORMED: "could not parse a message", p.ERR_TOO_LARGE: "refused a chunk as too large"}


@dataclasses.dataclass
class BenchOptions:
    port: str
    model: Path
    images: Path
    out: Path
    baud: int = 921600
    count: int | None = None
    warmup: int = 0
    timeout: float | None = None  # seconds of silence before the board counts as dead; None = derived
    resume: bool = False  # keep the results in `out` and send only the missing images
    force: bool = False  # replace an existing `out` (never done silently)
    max_retries: int = 20  # retries of one input before giving up on the board
    device: str | None = None  # device profile key for the per-layer estimate beside the measured times
    device_file: Path | None = None  # or a profile file (e.g. from `edgemnv2 devices calibrate`)


@dataclasses.dataclass
class LatencyStats:
    mean: float
    p50: float
    p90: float
    p99: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> "LatencyStats | None":
        if not values:
            return None
        a = np.asarray(values, dtype=np.float64)
        return cls(*(round(float(v), 1) for v in (a.mean(), np.percentile(a, 50), np.percentile(a, 90),
                                                   np.percentile(a, 99), a.std(), a.min(), a.max())))


@dataclasses.dataclass
class LayerTimes:
    """The board's per-op times (RESULT `layer_us`), mean over the images that carried them.

    `gap_fraction` says how much of the whole inference the ops' sum misses (the interpreter's loop between
    ops): the check that per-layer times account for the inference.
    """

    images: int  # results with per-layer times
    mean_us: list[float]  # per op, in graph order
    sum_us: float  # sum of the per-op means
    whole_us: float  # mean whole-inference time of the same images
    gap_fraction: float | None  # (whole - sum) / whole
    table: LayerTable | None = None  # per op and per kind: MACs, cycles per MAC, measured vs estimated

    @classmethod
    def of(cls, records: list[dict[str, Any]], graph: ModelGraph | None = None, cpu_hz: int = 0,
           device: DeviceProfile | None = None) -> "LayerTimes | None":
        timed = [r for r in records if r.get("layer_us")]
        lengths = {len(r["layer_us"]) for r in timed}
        if not timed or len(lengths) != 1:
            return None
        mean = np.mean(np.asarray([r["layer_us"] for r in timed], dtype=np.float64), axis=0)
        whole = float(np.mean([r["latency_us"] for r in timed]))
        total = float(mean.sum())
        table = layer_table(graph, [float(v) for v in mean], cpu_hz, device) if graph is not None and cpu_hz else None
        return cls(len(timed), [round(float(v), 1) for v in mean], round(total, 1), round(whole, 1),
                   round((whole - total) / whole, 5) if whole else None, table)


@dataclasses.dataclass
class MemoryUse:
    """RAM the board measured itself (MEMORY, asked for after the last result): painted arena and stack."""

    arena_bytes: int
    arena_peak: int  # highest arena byte written + 1
    stack_peak: int  # deepest the model's invoke went below its caller
    stack_boot_peak: int  # deepest stack of the firmware since boot
    stack_region: int  # stack bytes painted and checked
    inferences: int
    peak_bytes: int  # arena_peak + stack_peak: what the model needs in RAM beyond the firmware's own

    @classmethod
    def of(cls, msg: p.Memory) -> "MemoryUse":
        return cls(msg.arena_bytes, msg.arena_peak, msg.stack_peak, msg.stack_boot_peak, msg.stack_region,
                   msg.inferences, msg.arena_peak + msg.stack_peak)


@dataclasses.dataclass
class BenchReport:
    """Summary of a bench run (this run plus, with --resume, the results already in the JSONL)."""

    port: str
    baud: int
    board: str
    runtime: str
    protocol_version: int
    model_sha256: str
    out: str
    total: int  # images asked for
    sent: int  # images uploaded in this run (warm-up excluded)
    received: int  # results in the JSONL (this run + resumed)
    received_this_run: int
    errors: int  # inputs the board failed to run (ERROR runtime)
    missing: int  # images without a result
    compared: int
    exact_matches: int
    top1_agreement: float | None
    max_abs_diff: int | None
    reference_runtime: str | None
    latency_us: LatencyStats | None
    cycles_mean: float | None
    transfer_s: float | None  # mean upload time of one input (first chunk sent → last chunk acknowledged)
    images_per_s: float | None
    wire_limit_images_per_s: float
    wire_limit_fraction: float | None  # images_per_s / wire limit
    wire_efficiency: float | None  # payload bits per second / baud (8N1 caps it at 0.8)
    overhead: float | None  # protocol bytes sent / payload bytes sent (retransmissions count as overhead)
    payload_bytes: int
    tx_bytes: int
    rx_bytes: int
    retries: int
    crc_errors: int
    resets: int
    elapsed_s: float
    complete: bool
    stopped: str | None = None  # why the run stopped early
    layers: LayerTimes | None = None  # per-op times when the board reports them
    memory: MemoryUse | None = None  # RAM measured on the board (INFO flag FLAG_MEMORY)
    skipped: list[str] = dataclasses.field(default_factory=list)  # files not sent: "name: why" (unreadable, too large)


class ReferenceRun:
    """The host's outputs for the same inputs and runtime, computed on a thread while the board works.

    `get(id)` blocks until that id is done; it returns None when no host runner exists for the board's
    runtime or the runner failed (the bench then reports outputs as not compared).
    """

    def __init__(self, runtime: str, model: Path, jobs: list[tuple[int, bytes]]) -> None:
        self.runtime: str | None = None
        self.problem: str | None = None
        self._outputs: dict[int, bytes] = {}
        self._done = threading.Condition()
        self._finished = False
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(runtime, model, jobs), name="reference",
                                        daemon=True)
        self._thread.start()

    def _run(self, runtime: str, model: Path, jobs: list[tuple[int, bytes]]) -> None:
        from edgemnv2.serial.runners import open_runner

        try:
            runner = open_runner(runtime, model)
        except RuntimeUnavailable as exc:
            self._finish(f"no host reference for runtime {runtime}: {exc}")
            return
        self.runtime = runner.runtime
        try:
            for ident, data in jobs:
                if self._cancelled.is_set():
                    break
                output = runner(data).output
                with self._done:
                    self._outputs[ident] = output
                    self._done.notify_all()
        except Exception as exc:  # noqa: BLE001 - a failing reference must not stop the bench
            self._finish(f"host reference run failed: {exc}")
        else:
            self._finish(None)
        finally:
            runner.close()

    def _finish(self, problem: str | None) -> None:
        with self._done:
            self.problem = problem
            self._finished = True
            if problem:
                self.runtime = None
                log.warning("%s; outputs will not be compared", problem)
            self._done.notify_all()

    def cancel(self) -> None:
        """Stop after the current input (the bench ended early)."""
        self._cancelled.set()

    def get(self, ident: int) -> bytes | None:
        with self._done:
            self._done.wait_for(lambda: ident in self._outputs or self._finished)
            return None if self.problem else self._outputs.get(ident)


def check_info(info: p.Info) -> None:
    """The handshake's numbers within what a board can mean: each wrong one is one line, never a hang."""
    limits = (("window", info.window, 1, p.MAX_WINDOW), ("input_slots", info.input_slots, 1, p.MAX_INPUT_SLOTS),
              ("max_payload", info.max_payload, p.MIN_PAYLOAD, p.MAX_PAYLOAD))
    for name, value, low, high in limits:
        if not low <= value <= high:
            raise BoardError(f"the board's handshake announces {name} {value} (must be {low}..{high}): "
                             "the firmware is broken or not edgemnv2's; re-export and flash it")
    if info.runtime.split("+")[0] not in p.RUNTIMES:
        raise BoardError(f"the board names an unknown runtime {info.runtime!r} (known: {', '.join(p.RUNTIMES)}): "
                         "update edgemnv2 or the firmware")


@dataclasses.dataclass
class _Upload:
    id: int
    data: bytes
    started: float
    acked: int = 0
    sent: int = 0
    deadline: float = 0.0
    rewound_to: int = -1  # offset of the last go-back, so repeated SEQUENCE errors rewind once


class Streamer:
    """The host's protocol state machine over an open Transport."""

    def __init__(self, transport: Transport, timeout: float | None, max_retries: int) -> None:
        self.t = transport
        self.user_timeout = timeout
        self.max_retries = max_retries
        self.info: p.Info | None = None
        self.retries = 0
        self.resets = 0
        self.payload_bytes = 0  # input bytes the board acknowledged, each input counted once
        self.uploaded: set[int] = set()  # ids whose input the board acknowledged in full
        self.first_upload: float | None = None  # when the first measured (non-warm-up) upload began
        self.slowest_s = 0.0  # slowest on-device inference seen, for the result deadline
        self.last_progress = time.monotonic()  # last ACK that advanced or RESULT/ERROR for an awaited input
        self._idle_frames: Counter[str] = Counter()  # frames received since then that were no progress

    # ------------------------------------------------------------------ handshake

    def handshake(self, model_sha256: bytes, timeout: float) -> p.Info:
        """HELLO until INFO arrives (the board may be booting); check it runs our model with sane limits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.t.send(p.Hello(p.PROTOCOL_VERSION, model_sha256))
            resend = time.monotonic() + 1.0
            while time.monotonic() < min(resend, deadline):
                msg = self.t.receive(min(resend, deadline) - time.monotonic())
                version = msg.version if isinstance(msg, p.Info) else (
                    msg.detail if isinstance(msg, p.FrameFault) and msg.kind == "version" else p.PROTOCOL_VERSION)
                if version != p.PROTOCOL_VERSION:
                    raise BoardError(f"the board speaks protocol version {version}, this host "
                                     f"{p.PROTOCOL_VERSION}: update the firmware or edgemnv2")
                if isinstance(msg, p.Info):
                    if msg.model_sha256 != model_sha256:
                        raise ModelError(f"the board runs a different model (sha256 {msg.model_sha256.hex()[:12]}…, "
                                         f"--model has {model_sha256.hex()[:12]}…): flash this model "
                                         "(edgemnv2 export/flash) or pass the model the board runs")
                    check_info(msg)
                    self.info = msg
                    return msg
        raise BoardError(f"no answer from a board on {self.t.port_name} within {timeout:.0f} s: check the port and "
                         "baud rate, and that the edgemnv2 firmware (or board-sim) is running")

    def memory(self) -> p.Memory | None:
        """The board's RAM measurement (GET_MEMORY → MEMORY), None when its INFO does not offer one or it
        does not answer within the ACK timeout (the results stand without it)."""
        assert self.info is not None
        if not self.info.flags & p.FLAG_MEMORY:
            return None
        self.t.send(p.GetMemory())
        deadline = time.monotonic() + self.ack_timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.t.receive(left)
            if isinstance(msg, p.Memory):
                return msg
            if isinstance(msg, p.Error) and msg.code in (p.ERR_UNSUPPORTED, p.ERR_RUNTIME):
                log.warning("the board advertised a RAM measurement but answered GET_MEMORY with %s", msg.name)
                return None
        log.warning("no MEMORY answer to GET_MEMORY within %.1f s", self.ack_timeout)
        return None

    # ------------------------------------------------------------------ derived timeouts

    @property
    def ack_timeout(self) -> float:
        assert self.info is not None
        return p.ack_timeout(self.t.baud, self.info.max_payload, self.info.window)

    @property
    def timeout(self) -> float:
        """Silence after which the board is dead (also the result timeout)."""
        assert self.info is not None
        if self.user_timeout:
            return self.user_timeout
        return 10.0 + 3 * p.wire_seconds(p.frame_wire_bytes(self.info.input.nbytes), self.t.baud)

    # ------------------------------------------------------------------ streaming

    def run(self, jobs: list[tuple[int, bytes]], on_result: Callable[[int, p.Result | p.Error, float], None]) -> None:
        """Upload every (id, input) and hand each RESULT (or ERROR runtime) to `on_result`.

        Raises BoardError when the board stops answering, disconnects or refuses the inputs.
        """
        info = self.info
        assert info is not None
        inputs = dict(jobs)
        pending: deque[int] = deque(ident for ident, _ in jobs)
        attempts: dict[int, int] = {}
        upload: _Upload | None = None
        awaiting: OrderedDict[int, list[float]] = OrderedDict()  # id -> [upload seconds, result deadline]
        slots = max(1, info.input_slots)
        self._progress()  # the host may have spent a while on its reference run
        self._blocked_until = 0.0  # after ERROR busy: no new upload before a RESULT or this time

        def requeue(ident: int) -> None:
            attempts[ident] = attempts.get(ident, 0) + 1
            if attempts[ident] > self.max_retries:
                raise BoardError(f"input {ident} failed {attempts[ident]} times; the link is too noisy or the "
                                 "board keeps resetting")
            pending.appendleft(ident)

        def on_reset(nonce: int) -> None:
            nonlocal upload
            self.resets += 1
            log.warning("board reset (boot nonce %08x → %08x); re-sending unanswered inputs", info.boot_nonce, nonce)
            self.info = dataclasses.replace(self.info, boot_nonce=nonce)
            lost = list(awaiting) + ([upload.id] if upload else [])
            awaiting.clear()
            upload = None
            for ident in reversed(lost):
                self.retries += 1
                requeue(ident)

        while pending or upload or awaiting:
            now = time.monotonic()
            self._on_quiet(upload, awaiting, now)  # acts only on deadlines already passed, even amid chatter
            if upload is None and pending and len(awaiting) < slots and now >= self._blocked_until:
                ident = pending.popleft()
                upload = _Upload(ident, inputs[ident], now, deadline=now + self.ack_timeout)
                if self.first_upload is None and ident < WARMUP_ID_BASE:
                    self.first_upload = now
            if upload is not None:
                self._pump(upload, info)
            deadline = self._next_deadline(upload, awaiting)
            msg = self.t.receive(max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            if msg is None or isinstance(msg, p.FrameFault):  # a frame of another protocol version is noise here
                continue
            self._idle_frames[type(msg).__name__.upper()] += 1
            nonce = getattr(msg, "boot_nonce", None)
            if nonce is not None and nonce != self.info.boot_nonce:
                on_reset(nonce)
                info = self.info
                self._blocked_until = 0.0
                if isinstance(msg, p.Info):
                    continue
            if isinstance(msg, p.Ack):
                if upload is not None and msg.id == upload.id and msg.next_offset > upload.acked:
                    self._progress()
                    upload.acked = min(msg.next_offset, len(upload.data))
                    upload.sent = max(upload.sent, upload.acked)
                    upload.deadline = now + self.ack_timeout
                    if upload.acked == len(upload.data):
                        self.uploaded.add(upload.id)
                        self.payload_bytes += len(upload.data)
                        awaiting[upload.id] = [now - upload.started, now + self._result_wait(len(awaiting) + 1)]
                        upload = None
            elif isinstance(msg, p.Result):
                if msg.id not in awaiting:
                    continue  # a duplicate, or a result from before a reset
                upload_s = awaiting.pop(msg.id)[0]
                self._progress()
                self._blocked_until = 0.0
                if msg.input_crc32 != p.crc32(inputs[msg.id]):
                    self.retries += 1
                    log.warning("input %d reached the board corrupted (CRC mismatch); sending it again", msg.id)
                    requeue(msg.id)
                    continue
                self.slowest_s = max(self.slowest_s, msg.micros / 1e6)
                on_result(msg.id, msg, upload_s)
            elif isinstance(msg, p.Error):
                upload = self._on_error(msg, upload, awaiting, requeue, on_result)
            # INFO with the same nonce (a late HELLO answer) and PONG need nothing more

    def _progress(self) -> None:
        self.last_progress = time.monotonic()
        self._idle_frames.clear()

    def _check_progress(self, now: float) -> None:
        """The one deadline no board can push back: `timeout` without an ACK that advances or a result.

        Frames that move nothing forward (INFO, PONG, busy, bad CRC, duplicates) do not reset it, so a board
        that keeps talking without working cannot keep the host waiting."""
        if now - self.last_progress < self.timeout:
            return
        if not self._idle_frames:
            raise BoardError(f"the board stopped answering: nothing received for {self.timeout:.1f} s "
                             f"on {self.t.port_name}")
        kinds = ", ".join(f"{count} {kind}" for kind, count in self._idle_frames.most_common())
        raise BoardError(f"the board made no progress for {self.timeout:.1f} s on {self.t.port_name}: it sent "
                         f"{kinds} but no ACK or RESULT")

    def _result_wait(self, queued: int) -> float:
        """How long to wait for a RESULT before asking for it again: `timeout` until an inference was
        timed, then three times the slowest one per queued input plus the ACK timeout."""
        if not self.slowest_s:
            return self.timeout
        return min(self.timeout, 3 * self.slowest_s * queued + self.ack_timeout)

    def _pump(self, upload: _Upload, info: p.Info) -> None:
        """Send chunks while the window has room."""
        total = len(upload.data)
        while upload.sent < total and -(-(upload.sent - upload.acked) // info.max_payload) < info.window:
            end = min(upload.sent + info.max_payload, total)
            self.t.send(p.Input(upload.id, upload.sent, total, upload.data[upload.sent:end]))
            upload.sent = end

    def _next_deadline(self, upload: _Upload | None, awaiting: OrderedDict[int, list[float]]) -> float:
        candidates = [self.last_progress + self.timeout]
        if upload is not None:
            candidates.append(upload.deadline)
        elif self._blocked_until:
            candidates.append(self._blocked_until)
        if awaiting:
            candidates.append(min(v[1] for v in awaiting.values()))
        return min(candidates)

    def _on_quiet(self, upload: _Upload | None, awaiting: OrderedDict[int, list[float]], now: float) -> None:
        """Act on the deadlines that have passed: give up, retransmit, or ask for a result again."""
        self._check_progress(now)
        if upload is not None and now >= upload.deadline:
            self.retries += 1
            upload.sent = upload.acked  # go back to the last acknowledged byte
            upload.deadline = now + self.ack_timeout
        for ident, entry in awaiting.items():
            if now >= entry[1]:
                self.retries += 1
                self.t.send(p.GetResult(ident))
                entry[1] = now + self._result_wait(len(awaiting))
                break

    def _on_error(self, msg: p.Error, upload: _Upload | None, awaiting: OrderedDict[int, list[float]],
                  requeue: Callable[[int], None],
                  on_result: Callable[[int, p.Result | p.Error, float], None]) -> _Upload | None:
        """Apply the recovery rules of docs/protocol.md §3; returns the upload still in progress."""
        if msg.code in FATAL_ERRORS:
            raise BoardError(f"the board {FATAL_ERRORS[msg.code]}: {msg.message or msg.name} "
                             "(firmware and host disagree: re-export the firmware for this model)")
        if msg.code == p.ERR_MODEL_MISMATCH:
            raise ModelError(f"the board runs a different model: {msg.message}")
        if msg.code == p.ERR_SEQUENCE and upload is not None and msg.id == upload.id:
            if msg.detail != upload.rewound_to:
                self.retries += 1
                upload.rewound_to = upload.acked = upload.sent = min(msg.detail, len(upload.data))
        elif msg.code == p.ERR_BAD_CRC and upload is not None:
            self.retries += 1
            upload.sent = upload.rewound_to = upload.acked
        elif msg.code == p.ERR_BUSY:
            if upload is not None and msg.id == upload.id:
                requeue(upload.id)
                self._blocked_until = time.monotonic() + self.ack_timeout
                return None
            if msg.id in awaiting:
                awaiting[msg.id][1] = time.monotonic() + self._result_wait(len(awaiting))  # still computing
        elif msg.code == p.ERR_UNKNOWN_ID and msg.id in awaiting:
            awaiting.pop(msg.id)
            self.retries += 1
            requeue(msg.id)
        elif msg.code == p.ERR_RUNTIME and msg.id in awaiting:
            self._progress()
            on_result(msg.id, msg, awaiting.pop(msg.id)[0])
        return upload


# ---------------------------------------------------------------------- the bench command

def _output_array(raw: bytes, desc: p.TensorDesc) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.dtype(desc.dtype))


def run_bench(options: BenchOptions, on_result: Callable[[dict[str, Any]], None] | None = None,
              on_start: Callable[[int], None] | None = None) -> BenchReport:
    """Run the whole bench; returns the report, or raises BoardError after saving what was received.

    The BoardError says how many results were saved, and its `report` attribute holds the partial summary.
    """
    from edgemnv2.data import load_images
    from edgemnv2.profile import resolve_devices
    from edgemnv2.profile.cost import graph_costs
    from edgemnv2.profile.graph import load_tflite
    from edgemnv2.profile.latency import layer_features
    from edgemnv2.runtime import open_model

    if options.count is not None and options.count < 1:
        raise InputError(f"--count must be at least 1, got {options.count}")
    if options.warmup < 0:
        raise InputError(f"--warmup must be 0 or more, got {options.warmup}")
    if options.baud <= 0:
        raise InputError(f"--baud must be positive, got {options.baud}")
    if options.timeout is not None and options.timeout <= 0:
        raise InputError(f"--timeout must be positive, got {options.timeout}")
    if options.device and ("," in options.device or options.device == "all") \
            or options.device and options.device_file:
        raise InputError("bench takes one device profile for the per-layer estimate: --device KEY or --device-file F")
    device = resolve_devices(options.device, options.device_file)[0] if options.device or options.device_file else None
    model = open_model(options.model)
    graph = load_tflite(Path(options.model))
    model_sha = hashlib.sha256(Path(options.model).read_bytes()).digest()
    shape = model.input.shape
    resolution = int(shape[1])
    image_set = load_images(options.images, resolution, limit=options.count)
    raw_inputs = model.quantize_input(image_set.images)
    files = [f.name for f in image_set.files]

    header = {"kind": RESULTS_KIND, "schema_version": RESULTS_SCHEMA_VERSION, "model_sha256": model_sha.hex(),
              "images": {"count": len(files), "sha256": hashlib.sha256("\n".join(files).encode()
                                                                       + raw_inputs.tobytes()).hexdigest()},
              "options": {"baud": options.baud, "count": options.count, "warmup": options.warmup,
                          "timeout": options.timeout},
              "model": Path(options.model).name,
              "layers": {"ops": [dataclasses.asdict(f) for f in layer_features(graph, graph_costs(graph))]}}
    previous, done = _open_results(options, header)
    todo = [i for i in range(len(files)) if i not in done]

    with port_lock(options.port):
        transport = Transport(options.port, options.baud, write_timeout=options.timeout or 10.0)
        streamer = Streamer(transport, options.timeout, options.max_retries)
        try:
            info = streamer.handshake(model_sha, timeout=options.timeout or 10.0)
            _check_tensors(info, model)
            header.update(runtime=info.runtime, board=info.board_name, cpu_hz=info.cpu_hz)
            if previous is not None and previous.get("runtime") != info.runtime:
                raise InputError(f"{options.out} was written for runtime {previous.get('runtime')} and the board "
                                 f"runs {info.runtime}: use another --output, or --force to replace it")
            transport.set_write_timeout(streamer.timeout + 2 * p.wire_seconds(
                p.frame_wire_bytes(p.INPUT_HEADER_BYTES + info.max_payload), options.baud))
            if previous is None:  # replaced only now that a board answered: a wrong --port loses nothing
                atomic.write_text(options.out, json.dumps(header) + "\n")
            results = atomic.AppendLog(options.out)
        except BaseException:
            transport.close()
            raise
        return _stream(options, model_sha, info, streamer, transport, results, files, image_set.labels,
                       raw_inputs, done, todo, on_result, on_start, (graph, device),
                       [f"{f.name}: {why}" for f, why in image_set.skipped])


def _open_results(options: BenchOptions, header: dict[str, Any]) -> tuple[dict[str, Any] | None,
                                                                            dict[int, dict[str, Any]]]:
    """The header and results of the --output file to resume (None, {} to start a new one), after checking it
    was written for this model and these images; an existing file is replaced only with --force."""
    out = options.out
    if options.resume and options.force:
        raise InputError("--resume and --force exclude each other: --resume keeps the results, --force drops them")
    if out.is_dir():
        raise InputError(f"--output {out} is a folder; give a file such as {out / 'results.jsonl'}")
    has_results = out.is_file() and out.stat().st_size > 0
    if not has_results:
        return None, {}
    if not options.resume:
        if options.force:
            return None, {}
        raise InputError(f"{out} already holds bench results: add --resume to finish them, or --force to "
                         "replace them")
    if atomic.repair_torn_tail(out):
        log.warning("%s: removed a torn last line (a write cut short); that image is sent again", out)
    replace = "use another --output, or --force to replace it"
    previous, records = load_results(out, replace)
    if previous.get("model_sha256") != header["model_sha256"]:
        raise InputError(f"{out} was written for another model (sha256 {str(previous.get('model_sha256'))[:12]}… "
                         f"there, {header['model_sha256'][:12]}… now): {replace}")
    theirs, ours = previous.get("images") or {}, header["images"]
    if theirs != ours:
        raise InputError(f"{out} was written for another image list ({theirs.get('count')} images, sha256 "
                         f"{str(theirs.get('sha256'))[:12]}… there; {ours['count']} images, {ours['sha256'][:12]}… "
                         f"now): {replace}")
    return previous, {int(r["id"]): r for r in records}


def load_results(path: Path, remedy: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the result records of a bench results file, for every reader (bench --resume, devices
    calibrate): a header of this kind and schema version, then one JSON object with an id per line. Each
    problem is one InputError ending in `remedy`, what the reader's user can do about it."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read bench results {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("kind") != RESULTS_KIND:
        raise InputError(f"{path} has no bench results header (another program or an older edgemnv2 wrote it): "
                         f"{remedy}")
    if header.get("schema_version") != RESULTS_SCHEMA_VERSION:
        raise InputError(f"{path} holds results schema {header.get('schema_version')}, this edgemnv2 writes "
                         f"{RESULTS_SCHEMA_VERSION}: {remedy}")
    records = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = json.loads(line)
            int(record["id"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(f"line {number} of {path} is not a bench result (the file was edited or damaged): "
                             f"{remedy}") from None
        records.append(record)
    return header, records


def _stream(options: BenchOptions, model_sha: bytes, info: p.Info, streamer: Streamer, transport: Transport,
            results: atomic.AppendLog, files: list[str], labels: np.ndarray, raw_inputs: np.ndarray,
            done: dict[int, dict[str, Any]], todo: list[int], on_result: Callable[[dict[str, Any]], None] | None,
            on_start: Callable[[int], None] | None,
            estimate: tuple[ModelGraph, DeviceProfile | None], skipped: list[str]) -> BenchReport:
    """Upload the missing images and append each result as it arrives; the summary at the end."""
    started = time.monotonic()
    memory: MemoryUse | None = None
    records: dict[int, dict[str, Any]] = dict(done)
    upload_times: list[float] = []
    last_result: float | None = None
    stopped: str | None = None
    error: BoardError | None = None
    reference = ReferenceRun(info.runtime, options.model, [(i, raw_inputs[i].tobytes()) for i in todo])

    def handle(ident: int, msg: p.Result | p.Error, upload_s: float) -> None:
        nonlocal last_result
        if ident >= WARMUP_ID_BASE:
            return
        last_result = time.monotonic()
        upload_times.append(upload_s)
        record = _record(ident, files[ident], int(labels[ident]), msg, upload_s, streamer.info,
                         reference.get(ident))
        records[ident] = record
        results.write_line(json.dumps(record))
        if on_result:
            on_result(record)

    try:
        if on_start:
            on_start(len(todo))
        jobs = [(WARMUP_ID_BASE + k, raw_inputs[0].tobytes()) for k in range(options.warmup if todo else 0)]
        jobs += [(i, raw_inputs[i].tobytes()) for i in todo]
        streamer.run(jobs, handle)
        measured = streamer.memory()
        memory = MemoryUse.of(measured) if measured is not None else None
    except BoardError as exc:
        stopped = str(exc)
        error = exc
    finally:
        results.close()
        transport.close()
        reference.cancel()

    report = _report(options, streamer.info, records, len(files), upload_times, streamer.first_upload, last_result,
                     streamer, transport, reference.runtime, stopped, time.monotonic() - started,
                     raw_inputs[0].nbytes, model_sha, estimate)
    report.memory = memory
    report.skipped = skipped
    if error is not None:
        failure = BoardError(f"{stopped}; {report.received} of {report.total} results saved in {options.out} "
                             f"(rerun with --resume to finish)")
        failure.report = report  # type: ignore[attr-defined]
        raise failure from error
    return report


def _check_tensors(info: p.Info, model: Any) -> None:
    ours = p.TensorDesc(np.dtype(model.input.dtype).name, tuple(model.input.shape), model.input.scale,
                        model.input.zero_point)
    theirs = info.input
    same = (theirs.dtype == ours.dtype and tuple(theirs.shape) == ours.shape
            and abs(theirs.scale - ours.scale) <= 1e-6 * max(abs(ours.scale), 1e-12)
            and theirs.zero_point == ours.zero_point)
    if not same:
        raise ModelError(f"the board's input tensor {theirs} differs from the model's {ours}")


def _record(ident: int, file: str, label: int, msg: p.Result | p.Error, upload_s: float, info: p.Info,
            reference: bytes | None) -> dict[str, Any]:
    record: dict[str, Any] = {"id": ident, "file": file, "label": label, "transfer_s": round(upload_s, 6),
                              "boot_nonce": f"{info.boot_nonce:08x}"}
    if isinstance(msg, p.Error):
        record.update(status="error", error=msg.message or msg.name)
        return record
    output = _output_array(msg.output, info.output)
    record.update(status="ok", latency_us=msg.micros, cycles=msg.cycles, input_crc32=f"{msg.input_crc32:08x}",
                  top1=int(np.argmax(output)) if output.size else None, output_hex=msg.output.hex())
    if msg.layer_us:
        record["layer_us"] = list(msg.layer_us)
    if reference is not None:
        ref = _output_array(reference, info.output)
        record.update(host_top1=int(np.argmax(ref)), exact=bool(msg.output == reference),
                      max_abs_diff=int(np.max(np.abs(output.astype(np.int64) - ref.astype(np.int64))))
                      if ref.shape == output.shape else None)
    return record


def _report(options: BenchOptions, info: p.Info | None, records: dict[int, dict[str, Any]], total: int,
            upload_times: list[float], first_upload: float | None, last_result: float | None,
            streamer: Streamer, transport: Transport, reference_runtime: str | None, stopped: str | None,
            elapsed: float, input_bytes: int, model_sha: bytes,
            estimate: tuple[ModelGraph | None, DeviceProfile | None] = (None, None)) -> BenchReport:
    ok = [r for r in records.values() if r.get("status") == "ok"]
    compared = [r for r in ok if "exact" in r]
    wire_limit = options.baud / p.BITS_PER_BYTE / input_bytes
    this_run = len(upload_times)
    rate = None
    if this_run >= 2 and first_upload is not None and last_result is not None and last_result > first_upload:
        rate = this_run / (last_result - first_upload)
    diffs = [r["max_abs_diff"] for r in compared if r.get("max_abs_diff") is not None]
    payload = streamer.payload_bytes
    return BenchReport(
        port=options.port, baud=options.baud, board=info.board_name if info else "",
        runtime=info.runtime if info else "", protocol_version=p.PROTOCOL_VERSION, model_sha256=model_sha.hex(),
        out=str(options.out), total=total, sent=sum(1 for i in streamer.uploaded if i < WARMUP_ID_BASE),
        received=len(records), received_this_run=this_run,
        errors=sum(1 for r in records.values() if r.get("status") == "error"), missing=total - len(records),
        compared=len(compared), exact_matches=sum(1 for r in compared if r["exact"]),
        top1_agreement=round(sum(r["top1"] == r["host_top1"] for r in compared) / len(compared), 4)
        if compared else None,
        max_abs_diff=max(diffs) if diffs else None, reference_runtime=reference_runtime,
        latency_us=LatencyStats.of([r["latency_us"] for r in ok]),
        cycles_mean=round(float(np.mean([r["cycles"] for r in ok])), 1) if ok else None,
        transfer_s=round(float(np.mean(upload_times)), 6) if upload_times else None,
        images_per_s=round(rate, 3) if rate else None, wire_limit_images_per_s=round(wire_limit, 3),
        wire_limit_fraction=round(rate / wire_limit, 4) if rate else None,
        wire_efficiency=round(rate * input_bytes * 8 / options.baud, 4) if rate else None,
        overhead=round((transport.tx_bytes - payload) / payload, 5) if payload else None,
        payload_bytes=payload, tx_bytes=transport.tx_bytes, rx_bytes=transport.rx_bytes,
        retries=streamer.retries, crc_errors=sum(transport.faults.values()), resets=streamer.resets,
        elapsed_s=round(elapsed, 3), complete=stopped is None and len(records) == total, stopped=stopped,
        layers=LayerTimes.of(ok, estimate[0], info.cpu_hz if info else 0, estimate[1]))


def render_report(report: BenchReport) -> str:
    """The human-readable summary (stdout)."""
    lat = report.latency_us
    lines = [
        f"board {report.board or '?'} · runtime {report.runtime or '?'} · protocol v{report.protocol_version} · "
        f"{report.port} @ {report.baud} baud",
        f"results      {report.received}/{report.total} received ({report.received_this_run} this run), "
        f"{report.errors} errors, {report.missing} missing",
    ]
    if report.skipped:
        lines.append(f"skipped      {len(report.skipped)} unreadable image files not sent: "
                     + "; ".join(report.skipped[:3]) + ("; …" if len(report.skipped) > 3 else ""))
    if report.compared:
        lines.append(f"vs host      {report.exact_matches}/{report.compared} bit-exact with {report.reference_runtime}, "
                     f"max |diff| {report.max_abs_diff}, top-1 agreement {report.top1_agreement:.2%}")
    else:
        lines.append("vs host      not compared (no host reference for this runtime)")
    if lat:
        lines.append(f"latency µs   mean {lat.mean:.0f}  p50 {lat.p50:.0f}  p90 {lat.p90:.0f}  p99 {lat.p99:.0f}  "
                     f"std {lat.std:.0f}  (cycles mean {report.cycles_mean:.0f})")
    if report.transfer_s is not None:
        lines.append(f"transfer     {report.transfer_s * 1000:.1f} ms per input upload")
    if report.images_per_s:
        lines.append(f"throughput   {report.images_per_s:.3f} images/s = {report.wire_limit_fraction:.1%} of the wire "
                     f"limit ({report.wire_limit_images_per_s:.3f}/s); wire efficiency {report.wire_efficiency:.3f} "
                     f"payload bits/baud")
    if report.overhead is not None:
        lines.append(f"link         overhead {report.overhead:.3%} of {report.payload_bytes} payload bytes; "
                     f"{report.retries} retries, {report.crc_errors} bad frames received, {report.resets} resets")
    if report.layers:
        lines.extend(_render_layers(report.layers))
    if report.memory:
        m = report.memory
        lines.append(f"RAM          {m.peak_bytes:,} B measured on the board: arena peak {m.arena_peak:,} of "
                     f"{m.arena_bytes:,} B + stack {m.stack_peak:,} B in invoke (firmware since boot "
                     f"{m.stack_boot_peak:,} of {m.stack_region:,} B checked), over {m.inferences} inferences")
    lines.append(f"written      {report.out}")
    if report.stopped:
        lines.append(f"STOPPED      {report.stopped}")
    return "\n".join(lines)


def _render_layers(layers: LayerTimes) -> list[str]:
    gap = f"{layers.gap_fraction:.2%}" if layers.gap_fraction is not None else "?"
    lines = [f"per layer    {len(layers.mean_us)} ops, mean over {layers.images} images: sum {layers.sum_us:.0f} µs "
             f"vs whole inference {layers.whole_us:.0f} µs ({gap} between ops)",
             "  op      mean µs   share"]
    if layers.table is not None:
        return lines[:1] + render_layer_table(layers.table)
    for index, us in enumerate(layers.mean_us):
        share = us / layers.sum_us if layers.sum_us else 0.0
        lines.append(f"  {index:>3}  {us:>10.1f}  {share:>6.1%}")
    return lines
