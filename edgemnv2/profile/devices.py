"""Device profiles: one TOML file per device under profile/devices/, loaded into frozen dataclasses.

Facts live in data files with their sources (a `[sources]` table keyed like the value it backs), so a
number can be checked and corrected without touching code. Loading validates every key and type and
names the file, the key and the allowed values when something is wrong. `--device-file my.toml` loads
a user's own profile through the same checks.

This folder is the one hardware registry: a file's key is the name every command uses for that hardware
(`profile --device`, `export`/`flash --board`, `deploy --target`); `aliases` keeps older names working;
`base = "KEY"` takes another profile's facts and changes only what differs (same chip, another board), so
no fact is written twice; the `[board]` table holds what only firmware export, flashing or deploy need
(read by edgemnv2/deploy/boards.py).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from edgemnv2.errors import DeviceProfileError
from edgemnv2.profile.graph import OP_KINDS
from edgemnv2.resources import data_file

KINDS = ("linux", "mcu", "edgetpu")
MAC_OP_KINDS = ("conv", "pointwise", "depthwise", "fully_connected")
# what a fitted `[cpu.per_kind.KIND]` table may name: the profile's op kinds, multiplying ones first
FITTED_KINDS = (*MAC_OP_KINDS, *sorted(set(OP_KINDS.values()) - set(MAC_OP_KINDS)))
KIND_CYCLE_KEYS = ("cycles_per_mac", "cycles_per_output", "cycles_per_weight", "cycles_per_byte", "cycles_per_op")


@dataclass(frozen=True)
class KindCycles:
    """Measured cycles of one op kind (`[cpu.per_kind.KIND]`, written by `edgemnv2 devices calibrate`):
    per multiplication inside the input, per output element, per weight, per activation byte touched, and per
    operator."""

    cycles_per_mac: float = 0.0
    cycles_per_output: float = 0.0
    cycles_per_weight: float = 0.0
    cycles_per_byte: float = 0.0
    cycles_per_op: float = 0.0

    def cycles(self, inside_macs: int, outputs: int, weights: int, touched_bytes: int) -> float:
        return (self.cycles_per_mac * inside_macs + self.cycles_per_output * outputs + self.cycles_per_weight * weights
                + self.cycles_per_byte * touched_bytes + self.cycles_per_op)


@dataclass(frozen=True)
class CpuModel:
    """How fast the cores run each op kind; `efficiency` is the one factor fitted to published latencies."""

    int8_macs_per_cycle: dict[str, float]   # sustained per core, per op kind in MAC_OP_KINDS
    cycles_per_output: float                # requantize + store per output element (int8)
    elementwise_cycles_per_byte: float      # add, pool, mean, softmax, quantize, pad, ... per byte touched
    op_overhead_us: float                   # dispatch cost per operator
    parallel_efficiency: float              # speed-up per extra thread, 0..1
    float32_slowdown: float                 # float32 kernels vs int8 on the same cores
    activation_bandwidth_mbps: float        # sustained read+write of activations
    weight_bandwidth_mbps: float            # sustained streaming of weights (DRAM, or flash/XIP on MCUs)
    efficiency: float = 1.0
    per_kind: dict[str, KindCycles] = field(default_factory=dict)  # fitted: replaces the roofline for its kinds


@dataclass(frozen=True)
class EdgeTpuModel:
    """Edge TPU accelerator facts: peak rate, parameter cache, host link, per-invoke costs."""

    peak_macs_per_second: float
    utilization: dict[str, float]            # fraction of peak per op kind in MAC_OP_KINDS
    parameter_cache_bytes: int               # on-chip SRAM for parameters; the excess streams every inference
    host_link_mbps: float                    # USB 3 / PCIe / on-module bus for I/O and streamed parameters
    invoke_overhead_us: float
    op_overhead_us: float
    efficiency: float = 1.0


@dataclass(frozen=True)
class DeviceProfile:
    key: str
    name: str
    kind: str                                # linux | mcu | edgetpu
    runtime: str
    cores: int
    threads: int
    clock_mhz: float
    simd: str
    ram_bytes: int                           # SRAM on MCUs, DRAM on Linux boards
    flash_bytes: int                         # program flash on MCUs, storage on Linux boards
    psram_bytes: int
    runtime_code_bytes: int                  # inference runtime's code in flash/storage
    runtime_ram_bytes: int                   # runtime RAM besides the arena (stacks, heap, interpreter)
    cpu: CpuModel
    edgetpu: EdgeTpuModel | None
    sources: dict[str, str]
    calibration: str                         # what `efficiency` was fitted to, or "uncalibrated ..."
    path: Path = field(compare=False, default=Path())
    aliases: tuple[str, ...] = ()            # older names that resolve to this key
    board: dict[str, Any] | None = None      # the [board] table: export/flash/deploy facts (deploy/boards.py)

    @property
    def is_mcu(self) -> bool:
        return self.kind == "mcu"


def _devices_dir() -> Traversable:
    return data_file("profile/devices")


def known_devices() -> list[str]:
    """Keys of the bundled profiles (file names without .toml)."""
    return sorted(p.name[:-5] for p in _devices_dir().iterdir() if p.name.endswith(".toml"))


def _bundled_text(key: str) -> tuple[str, Path]:
    resource = _devices_dir() / f"{key}.toml"
    return resource.read_text(encoding="utf-8"), Path(str(resource))


@lru_cache(maxsize=1)
def device_aliases() -> dict[str, str]:
    """Old name -> key, from every bundled profile's `aliases`; an alias may not shadow a key or another alias."""
    aliases: dict[str, str] = {}
    keys = set(known_devices())
    for key in sorted(keys):
        text, path = _bundled_text(key)
        try:
            names = tomllib.loads(text).get("aliases", [])
        except tomllib.TOMLDecodeError as exc:
            raise DeviceProfileError(f"{path}: not valid TOML ({exc})") from None
        for alias in names:
            if alias in keys or alias in aliases:
                raise DeviceProfileError(f"{path}: alias {alias!r} is already a device key or another alias")
            aliases[alias] = key
    return aliases


def canonical_key(name: str) -> str:
    """The registry key for a key or an old name (unchanged when it is neither)."""
    return device_aliases().get(name, name)


def load_device(key: str) -> DeviceProfile:
    """A bundled profile by key or alias; unknown names list the known keys."""
    known = known_devices()
    key = canonical_key(key)
    if key not in known:
        raise DeviceProfileError(f"unknown device '{key}'; known devices: {', '.join(known)} "
                                 "(or give your own profile with --device-file)")
    text, path = _bundled_text(key)
    return _parse(text, path, key)


def load_device_file(path: Path) -> DeviceProfile:
    """A user's profile file, checked like the bundled ones (`base` may name a bundled profile)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeviceProfileError(f"device profile {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceProfileError(f"cannot read device profile {path}: {exc}") from None
    return _parse(text, path, path.stem)


def load_all() -> list[DeviceProfile]:
    return [load_device(key) for key in known_devices()]


_OWN_KEYS = ("aliases", "base", "board")   # never taken from a base profile


def _merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """`own` over `base`, table by table (a value given in `own` replaces the base's)."""
    merged = dict(base)
    for k, v in own.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def _with_base(data: dict[str, Any], path: Path) -> dict[str, Any]:
    base = data.get("base")
    if base is None:
        return data
    if not isinstance(base, str) or canonical_key(base) not in known_devices():
        raise DeviceProfileError(f"{path}: key 'base' must name a bundled device ({', '.join(known_devices())}), "
                                 f"got {base!r}")
    text, base_path = _bundled_text(canonical_key(base))
    base_data = tomllib.loads(text)
    if "base" in base_data:
        raise DeviceProfileError(f"{path}: base profile {base_path} has a base itself; name the root profile")
    return _merge({k: v for k, v in base_data.items() if k not in _OWN_KEYS}, data)


class _Reader:
    """Typed access to one TOML table that names the file and key in every error."""

    def __init__(self, data: dict[str, Any], path: Path, prefix: str = "") -> None:
        self.data, self.path, self.prefix = data, path, prefix

    def fail(self, key: str, problem: str) -> DeviceProfileError:
        return DeviceProfileError(f"{self.path}: key '{self.prefix}{key}' {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        value = self.data[key]
        if kind in (float, (float,)) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be {names}, got {type(value).__name__} {value!r}")
        return value

    def positive(self, key: str, kind: type = float, default: Any = ...) -> Any:
        value = self.get(key, kind, default)
        if value is not None and value <= 0:
            raise self.fail(key, f"must be positive, got {value}")
        return value

    def fraction(self, key: str, default: Any = ...) -> float:
        value = self.get(key, float, default)
        if not 0 < value <= 1:
            raise self.fail(key, f"must be in (0, 1], got {value}")
        return value

    def table(self, key: str, required: bool = True) -> _Reader | None:
        if key not in self.data:
            if required:
                raise self.fail(key, "is missing (a [table])")
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return _Reader(value, self.path, f"{self.prefix}{key}.")

    def per_op_kind(self, key: str, fraction: bool = False) -> dict[str, float]:
        table = self.table(key)
        unknown = sorted(set(table.data) - set(MAC_OP_KINDS))
        if unknown:
            raise table.fail(unknown[0], f"is not an op kind; allowed: {', '.join(MAC_OP_KINDS)}")
        return {k: (table.fraction(k) if fraction else table.positive(k)) for k in MAC_OP_KINDS}

    def check_unknown(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise self.fail(unknown[0], f"is not a profile key; allowed: {', '.join(sorted(allowed))}")


_TOP_KEYS = {"aliases", "base", "board", "name", "kind", "runtime", "cores", "threads", "clock_mhz", "simd", "ram_bytes", "flash_bytes",
             "psram_bytes", "runtime_code_bytes", "runtime_ram_bytes", "calibration", "cpu", "edgetpu", "sources"}
_CPU_KEYS = {"int8_macs_per_cycle", "cycles_per_output", "elementwise_cycles_per_byte", "op_overhead_us",
             "parallel_efficiency", "float32_slowdown", "activation_bandwidth_mbps", "weight_bandwidth_mbps",
             "efficiency", "per_kind"}
_TPU_KEYS = {"peak_macs_per_second", "utilization", "parameter_cache_bytes", "host_link_mbps",
             "invoke_overhead_us", "op_overhead_us", "efficiency"}


def _aliases(top: _Reader) -> tuple[str, ...]:
    names = top.get("aliases", list, [])
    if not all(isinstance(n, str) and n for n in names):
        raise top.fail("aliases", f"must be a list of names, got {names!r}")
    return tuple(names)


def _per_kind(cpu_table: _Reader) -> dict[str, KindCycles]:
    """The optional `[cpu.per_kind.KIND]` tables: non-negative fitted cycle counts."""
    per_kind = cpu_table.table("per_kind", required=False)
    if per_kind is None:
        return {}
    unknown = sorted(set(per_kind.data) - set(FITTED_KINDS))
    if unknown:
        raise per_kind.fail(unknown[0], f"is not an op kind; allowed: {', '.join(FITTED_KINDS)}")
    fitted = {}
    for kind in FITTED_KINDS:
        table = per_kind.table(kind, required=False)
        if table is None:
            continue
        table.check_unknown(set(KIND_CYCLE_KEYS))
        values = {k: table.get(k, float, 0.0) for k in KIND_CYCLE_KEYS}
        negative = [k for k, v in values.items() if v < 0]
        if negative:
            raise table.fail(negative[0], f"must be 0 or more, got {values[negative[0]]}")
        fitted[kind] = KindCycles(**values)
    return fitted


def _parse(text: str, path: Path, key: str) -> DeviceProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeviceProfileError(f"{path}: not valid TOML ({exc})") from None
    data = _with_base(data, path)
    top = _Reader(data, path)
    top.check_unknown(_TOP_KEYS)
    kind = top.get("kind", str)
    if kind not in KINDS:
        raise top.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    cpu_table = top.table("cpu")
    cpu_table.check_unknown(_CPU_KEYS)
    cpu = CpuModel(
        int8_macs_per_cycle=cpu_table.per_op_kind("int8_macs_per_cycle"),
        cycles_per_output=cpu_table.get("cycles_per_output", float),
        elementwise_cycles_per_byte=cpu_table.positive("elementwise_cycles_per_byte"),
        op_overhead_us=cpu_table.get("op_overhead_us", float),
        parallel_efficiency=cpu_table.fraction("parallel_efficiency", 1.0),
        float32_slowdown=cpu_table.positive("float32_slowdown", float, 2.0),
        activation_bandwidth_mbps=cpu_table.positive("activation_bandwidth_mbps"),
        weight_bandwidth_mbps=cpu_table.positive("weight_bandwidth_mbps"),
        efficiency=cpu_table.positive("efficiency", float, 1.0),
        per_kind=_per_kind(cpu_table),
    )
    tpu = None
    tpu_table = top.table("edgetpu", required=(kind == "edgetpu"))
    if tpu_table is not None:
        tpu_table.check_unknown(_TPU_KEYS)
        tpu = EdgeTpuModel(
            peak_macs_per_second=tpu_table.positive("peak_macs_per_second"),
            utilization=tpu_table.per_op_kind("utilization", fraction=True),
            parameter_cache_bytes=tpu_table.positive("parameter_cache_bytes", int),
            host_link_mbps=tpu_table.positive("host_link_mbps"),
            invoke_overhead_us=tpu_table.get("invoke_overhead_us", float),
            op_overhead_us=tpu_table.get("op_overhead_us", float),
            efficiency=tpu_table.positive("efficiency", float, 1.0),
        )
    sources_table = top.table("sources")
    sources = {k: sources_table.get(k, str) for k in sources_table.data}
    cores = top.positive("cores", int)
    threads = top.positive("threads", int, cores)
    if threads > cores:
        raise top.fail("threads", f"must be at most cores ({cores}), got {threads}")
    return DeviceProfile(
        key=key, name=top.get("name", str), kind=kind, runtime=top.get("runtime", str), cores=cores,
        threads=threads, clock_mhz=top.positive("clock_mhz"), simd=top.get("simd", str),
        ram_bytes=top.positive("ram_bytes", int), flash_bytes=top.positive("flash_bytes", int),
        psram_bytes=top.get("psram_bytes", int, 0), runtime_code_bytes=top.get("runtime_code_bytes", int),
        runtime_ram_bytes=top.get("runtime_ram_bytes", int, 0), cpu=cpu, edgetpu=tpu, sources=sources,
        calibration=top.get("calibration", str), path=path,
        aliases=_aliases(top), board=top.get("board", dict, None),
    )
