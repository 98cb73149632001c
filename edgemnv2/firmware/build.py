"""`edgemnv2 build PROJECT`: compile an exported firmware project against a TensorFlow Lite Micro source tree.

Only what the model needs is compiled: the TFLM core (interpreter, allocator, planner, flatbuffer parsing,
shared TFLite code) and the kernel files that define the registrations its op resolver calls (model op →
resolver method in tflm_ops.toml → `Register_*` in micro_mutable_op_resolver.h → the kernel file defining it,
plus its `*_common.cc`); with CMSIS-NN the kernel's `kernels/cmsis_nn/` version and the CMSIS-NN sources it
calls (tflm_ops.toml `[cmsis_nn_sources]`). Object files are cached per (source path and content, flags,
compiler version, TFLM headers) in the user cache, so a second build of any project for the same target and
kernel set only compiles the project's own files (and the model array when it changed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edgemnv2.errors import BuildError, InputError, ToolMissing
from edgemnv2.firmware.targets import KERNEL_SETS, BuildTarget, build_target
from edgemnv2.resources import data_file

TFLM_OPS_FILE = data_file("deploy/tflm_ops.toml")
MANIFEST_NAME = "edgemnv2_project.json"
BUILD_DIR = "build"
# TFLM files under tensorflow/lite/micro/ that only tests, recording or the CMSIS-NN-free default need
_NOT_CORE = {"test_helpers.cc", "test_helper_custom_ops.cc", "mock_micro_graph.cc", "fake_micro_context.cc",
             "recording_micro_allocator.cc", "recording_single_arena_buffer_allocator.cc"}
_KERNELS_DIR = "tensorflow/lite/micro/kernels"
_ALWAYS_KERNEL_FILES = ("kernel_util", "micro_tensor_utils")  # helpers every kernel file calls
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class BuildRequest:
    project: Path
    tflm_dir: Path | None = None      # None: $EDGEMNV2_TFLM_DIR, else ../shared/tflm
    kernels: str | None = None        # None: the target's default (CMSIS-NN on Cortex-M)
    jobs: int = 2
    cache_dir: Path | None = None     # None: $EDGEMNV2_CACHE_DIR or ~/.cache/edgemnv2, /tflm-objects


@dataclass(frozen=True)
class FirmwareSize:
    """Berkeley `size`: text includes the model array and read-only data; bss includes the arena."""

    text: int
    data: int
    bss: int


@dataclass(frozen=True)
class BuildResult:
    target: str
    kernels: str
    project: Path
    elf: Path
    size: FirmwareSize
    compiler: str
    tflm_dir: Path | None  # None: a static-engine firmware (no TFLite Micro)
    sources: int          # translation units linked
    compiled: int         # of which compiled now (the rest came from the cache)
    seconds: float


# ---------------------------------------------------------------------------------------------- where things are

def resolve_tflm_dir(given: Path | None) -> Path:
    """--tflm-dir, else $EDGEMNV2_TFLM_DIR, else the shared folder's tflm/."""
    from edgemnv2.paths import env_folder, shared_dir

    if given is None:
        given = env_folder("EDGEMNV2_TFLM_DIR")
    if given is None:
        given = shared_dir() / "tflm"  # type: ignore[operator]
    given = Path(given).resolve()
    if not (given / "tensorflow" / "lite" / "micro" / "micro_interpreter.cc").is_file():
        raise InputError(f"{given} is not a TensorFlow Lite Micro source tree (no tensorflow/lite/micro/"
                         "micro_interpreter.cc); give one with --tflm-dir or EDGEMNV2_TFLM_DIR")
    return given


def default_cache_dir() -> Path:
    base = os.environ.get("EDGEMNV2_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgemnv2")
    return Path(base) / "tflm-objects"


def read_manifest(project: Path) -> dict:
    path = Path(project) / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"{project} is not an exported project (no {MANIFEST_NAME}); "
                         "render one with `edgemnv2 export --target mps2-an386|mps3-an547|host`")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------- which sources

@lru_cache(maxsize=1)
def _ops_table() -> dict:
    return tomllib.loads(TFLM_OPS_FILE.read_text())


def _registrations(tflm: Path, method: str) -> set[str]:
    """`Register_*` names a MicroMutableOpResolver method calls (its body and default arguments)."""
    header = (tflm / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    match = re.search(r"TfLiteStatus %s\((.*?)\)\s*\{(.*?)\n  \}" % re.escape(method), header, re.S)
    if match is None:
        raise BuildError(f"{tflm}: MicroMutableOpResolver has no method {method} (another TFLM version?)")
    return set(re.findall(r"\b(Register_\w+)\(\)", match.group(1) + match.group(2)))


@lru_cache(maxsize=4)
def _registration_files(kernels_dir: Path) -> dict[str, str]:
    """Register_X → the kernel file stem defining it."""
    found: dict[str, str] = {}
    for path in sorted(kernels_dir.glob("*.cc")):
        for match in re.finditer(r"TFLMRegistration\s+(Register_\w+)\s*\(\s*\)\s*\{", path.read_text()):
            found.setdefault(match.group(1), path.stem)
    return found


def kernel_stems(tflm: Path, ops: list[str]) -> list[str]:
    """Kernel file stems (under kernels/) the model's ops need, helpers included."""
    methods = _ops_table()["resolver"]
    defined = _registration_files(tflm / _KERNELS_DIR)
    stems = dict.fromkeys(_ALWAYS_KERNEL_FILES)
    for op in ops:
        if op not in methods:
            raise InputError(f"op {op} has no TFLite Micro kernel (see {TFLM_OPS_FILE.name})")
        for registration in sorted(_registrations(tflm, methods[op])):
            stem = defined.get(registration)
            if stem is None:
                raise BuildError(f"{tflm}: no kernel file defines {registration}() (op {op})")
            stems[stem] = None
            if (tflm / _KERNELS_DIR / f"{stem}_common.cc").is_file():
                stems[f"{stem}_common"] = None
    return list(stems)


def tflm_sources(tflm: Path, ops: list[str], kernels: str) -> list[Path]:
    """The TFLM translation units to compile for a model: core + its kernels (+ CMSIS-NN)."""
    core = [p for p in sorted((tflm / "tensorflow").rglob("*.cc"))
            if _KERNELS_DIR not in p.as_posix() and "cortex_m_generic" not in p.as_posix() and p.name not in _NOT_CORE]
    stems = kernel_stems(tflm, ops)
    files = []
    cmsis_dirs: dict[str, None] = {}
    table = _ops_table().get("cmsis_nn_sources", {})
    for stem in stems:
        optimized = tflm / _KERNELS_DIR / "cmsis_nn" / f"{stem}.cc"
        if kernels == "cmsis-nn" and optimized.is_file():
            files.append(optimized)
            cmsis_dirs.update(dict.fromkeys(table.get(stem, [])))
        else:
            files.append(tflm / _KERNELS_DIR / f"{stem}.cc")
    if cmsis_dirs:
        cmsis_dirs["NNSupportFunctions"] = None
        for folder in cmsis_dirs:
            files += sorted((tflm / "third_party/cmsis_nn/Source" / folder).glob("*.c"))
    return core + files


# CMSIS-NN source folders the backend's kernels come from (../shared/tflm/third_party/cmsis_nn/Source); the
# linker's --gc-sections keeps only what is called
CMSIS_FOLDERS = ("ConvolutionFunctions", "BasicMathFunctions", "NNSupportFunctions", "TransposeFunctions")


def cmsis_sources(tflm: Path) -> list[Path]:
    """The CMSIS-NN C files the backend may call, from a TFLite Micro tree's third_party/cmsis_nn."""
    root = Path(tflm) / "third_party" / "cmsis_nn"
    if not (root / "Include" / "arm_nnfunctions.h").is_file():
        raise ToolMissing(f"{root} has no CMSIS-NN sources: pass the shared TFLite Micro tree (../shared/tflm)")
    return [p for folder in CMSIS_FOLDERS for p in sorted((root / "Source" / folder).glob("*.c"))]


def cmsis_flags(tflm: Path) -> list[str]:
    """Include paths and defines of a CMSIS-NN build (../shared/tflm/README.md, without TFLite Micro)."""
    root = Path(tflm) / "third_party"
    return [f"-I{root / 'cmsis_nn'}", f"-I{root / 'cmsis_nn' / 'Include'}", f"-I{root / 'cmsis'}",
            f"-I{root / 'cmsis' / 'CMSIS' / 'Core' / 'Include'}", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0"]


# ---------------------------------------------------------------------------------------------- flags

@dataclass(frozen=True)
class Toolchain:
    cc: str
    cxx: str
    size: str
    version: str


@lru_cache(maxsize=4)
def toolchain(compiler: str) -> Toolchain:
    prefix = "arm-none-eabi-" if compiler == "arm-none-eabi" else ""
    names = (f"{prefix}gcc", f"{prefix}g++", f"{prefix}size")
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        hint = "gcc-arm-none-eabi libnewlib-arm-none-eabi" if prefix else "gcc g++ binutils"
        raise ToolMissing(f"{', '.join(missing)} not found: install {hint} (Debian: apt-get install {hint})")
    version = subprocess.run([names[1], "--version"], capture_output=True, text=True, check=True).stdout
    return Toolchain(*names, version=version.splitlines()[0].strip())


def _include_flags(tflm: Path, kernels: str) -> list[str]:
    dirs = [tflm, tflm / "third_party/gemmlowp", tflm / "third_party/flatbuffers/include", tflm / "third_party/ruy",
            tflm / "third_party/kissfft"]
    if kernels == "cmsis-nn":
        dirs += [tflm / "third_party/cmsis", tflm / "third_party/cmsis/CMSIS/Core/Include",
                 tflm / "third_party/cmsis_nn", tflm / "third_party/cmsis_nn/Include"]
    return [f"-I{d}" for d in dirs]


def compile_flags(spec: BuildTarget, tflm: Path, kernels: str) -> list[str]:
    """Flags shared by C and C++ (../shared/tflm/README.md's table)."""
    flags = ["-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DKERNELS_OPTIMIZED_FOR_SPEED",
             "-ffunction-sections", "-fdata-sections", *spec.cpu_flags]
    if kernels == "cmsis-nn":
        flags += ["-DCMSIS_NN", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0"]
    if spec.bare_metal:
        flags += ["-DTF_LITE_MCU_DEBUG_LOG", "-funsigned-char", "-mlittle-endian", "-fomit-frame-pointer"]
    else:
        flags += ["-DTF_LITE_USE_CTIME"]
    return flags + _include_flags(tflm, kernels)


def static_flags(spec: BuildTarget) -> list[str]:
    """Flags of a static-engine firmware (no TFLite Micro): the target's CPU and TFLM's bare-metal defaults."""
    flags = ["-ffunction-sections", "-fdata-sections", *spec.cpu_flags]
    if spec.bare_metal:
        flags += ["-funsigned-char", "-mlittle-endian", "-fomit-frame-pointer"]
    return flags


def _language_flags(path: Path) -> list[str]:
    if path.suffix == ".c":
        return ["-std=c17"]
    return ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics"]


def _opt_level(spec: BuildTarget, path: Path) -> str:
    """TFLM's split on Cortex-M: interpreter core -Os, kernels and CMSIS-NN -O2; everything -O2 on the host."""
    if spec.bare_metal and "/tensorflow/" in path.as_posix() and _KERNELS_DIR not in path.as_posix():
        return "-Os"
    return "-O2"


# ---------------------------------------------------------------------------------------------- compile + link

@dataclass(frozen=True)
class _Unit:
    source: Path
    argv: tuple[str, ...]   # without -o
    object: Path


def _tree_fingerprint(root: Path) -> str:
    """Headers' names, sizes and mtimes: a changed header invalidates every cached object built against it."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.h")):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _unit(source: Path, argv: list[str], compiler: str, headers: str, cache: Path) -> _Unit:
    key = hashlib.sha256(json.dumps([str(source), hashlib.sha256(source.read_bytes()).hexdigest(), argv, compiler,
                                     headers]).encode()).hexdigest()[:32]
    return _Unit(source, tuple(argv), cache / key[:2] / f"{source.stem}-{key}.o")


def _compile(unit: _Unit) -> str | None:
    """Compile into the cache atomically; None on success, else the compiler's first error lines."""
    unit.object.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=unit.object.parent, suffix=".o.tmp")
    os.close(fd)
    proc = subprocess.run([*unit.argv, "-o", tmp], capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        return f"{unit.source}:\n" + "\n".join(proc.stderr.strip().splitlines()[:12])
    os.replace(tmp, unit.object)
    return None


def _size(tools: Toolchain, elf: Path) -> FirmwareSize:
    out = subprocess.run([tools.size, str(elf)], capture_output=True, text=True, check=True).stdout.splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return FirmwareSize(text=text, data=data, bss=bss)


def build_project(request: BuildRequest, progress: ProgressFn | None = None) -> BuildResult:
    """Compile what is missing from the cache, link, and report the ELF with its size."""
    started = time.monotonic()
    project = Path(request.project).resolve()
    manifest = read_manifest(project)
    spec = build_target(manifest.get("target", "?"))
    kernels = request.kernels or manifest.get("kernels_default") or spec.kernels_default
    if kernels not in KERNEL_SETS:
        raise InputError(f"--kernels must be one of {', '.join(KERNEL_SETS)}, got {kernels!r}")
    if kernels == "cmsis-nn" and not spec.bare_metal and manifest.get("engine") != "static":
        raise InputError("CMSIS-NN kernels are Arm code: build the host target with --kernels reference")
    static = manifest.get("engine") == "static"   # the generated engine: no TFLite Micro at all
    if static and kernels != manifest.get("kernels_default"):
        raise InputError(f"this static engine was exported for {manifest.get('kernels_default')} kernels (its plan "
                         f"depends on them): re-export with --kernels {'cmsis-nn' if kernels == 'cmsis-nn' else 'portable'}")
    if request.jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {request.jobs}")
    # the static engine reads the TFLite Micro tree only for CMSIS-NN's sources
    tflm = resolve_tflm_dir(request.tflm_dir) if not static or kernels == "cmsis-nn" else None
    tools = toolchain(spec.compiler)
    cache = Path(request.cache_dir) if request.cache_dir else default_cache_dir()
    src = project / manifest.get("source_dir", "src")

    if static:
        common = static_flags(spec) + (cmsis_flags(tflm) if tflm is not None else [])
        library = cmsis_sources(tflm) if tflm is not None else []
    else:
        common = compile_flags(spec, tflm, kernels)
        library = tflm_sources(tflm, list(manifest.get("ops", [])), kernels)
    tflm_headers = "" if tflm is None else _tree_fingerprint(tflm)
    project_headers = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(src.glob("*.h")))).hexdigest()
    units = []
    for source in library:
        argv = [tools.cc if source.suffix == ".c" else tools.cxx, *_language_flags(source), _opt_level(spec, source),
                *common, "-c", str(source)]
        units.append(_unit(source, argv, tools.version, tflm_headers, cache))
    own = sorted(p for p in src.iterdir() if p.suffix in (".c", ".cc", ".cpp", ".S"))
    for source in own:
        if source.suffix == ".S":  # the model: .incbin of model.tflite, which is part of the key
            argv = [tools.cc, *spec.cpu_flags, f"-I{src}", "-c", str(source)]
            extra = hashlib.sha256((src / "model.tflite").read_bytes()).hexdigest()
        else:
            argv = [tools.cc if source.suffix == ".c" else tools.cxx, *_language_flags(source), "-O2", "-Wall",
                    f"-I{src}", *common, "-c", str(source)]
            extra = project_headers
        units.append(_unit(source, argv, tools.version, tflm_headers + extra, cache))

    todo = [u for u in units if not u.object.is_file()]
    done = 0
    if progress:
        progress(0, len(todo))
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=request.jobs) as pool:
        for error in pool.map(_compile, todo):
            done += 1
            if error:
                errors.append(error)
            if progress:
                progress(done, len(todo))
    if errors:
        raise BuildError(f"{len(errors)} of {len(todo)} files failed to compile; first: {errors[0]}")

    out_dir = project / BUILD_DIR / kernels
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / ("firmware.elf" if spec.bare_metal else "firmware")
    tmp = out_dir / f".{elf.name}.tmp"
    link = [tools.cxx, *spec.cpu_flags]
    if spec.bare_metal:
        link += ["-nostartfiles", "--specs=rdimon.specs", f"-T{project / manifest['linker_script']}",
                 f"-Wl,-Map={out_dir / 'firmware.map'}"]
    link += ["-Wl,--gc-sections", *[str(u.object) for u in units], "-lm", "-o", str(tmp)]
    proc = subprocess.run(link, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError("link failed: " + " | ".join(proc.stderr.strip().splitlines()[:8]))
    os.replace(tmp, elf)
    size = _size(tools, elf)
    (out_dir / "size.json").write_text(json.dumps({"text": size.text, "data": size.data, "bss": size.bss}) + "\n")
    return BuildResult(target=spec.name, kernels=kernels, project=project, elf=elf, size=size,
                       compiler=tools.version, tflm_dir=tflm, sources=len(units), compiled=len(todo),
                       seconds=round(time.monotonic() - started, 1))


def find_elf(project_or_elf: Path, kernels: str | None = None) -> tuple[Path, str]:
    """The built firmware of a project (the one built with `kernels`, or the newest), or an ELF given directly;
    returns (path, target)."""
    path = Path(project_or_elf)
    if path.is_file():
        manifest_dir = next((d for d in path.resolve().parents if (d / MANIFEST_NAME).is_file()), None)
        target = read_manifest(manifest_dir)["target"] if manifest_dir else _elf_target(path)
        return path, target
    manifest = read_manifest(path)
    spec = build_target(manifest["target"])
    name = "firmware.elf" if spec.bare_metal else "firmware"
    sets = [kernels] if kernels else list(KERNEL_SETS)
    built = [path / BUILD_DIR / k / name for k in sets if (path / BUILD_DIR / k / name).is_file()]
    if not built:
        raise InputError(f"{path} has no built firmware{f' with {kernels} kernels' if kernels else ''}: "
                         f"run `edgemnv2 build {path}` first")
    return max(built, key=lambda p: p.stat().st_mtime), spec.name


def _elf_target(path: Path) -> str:
    """An ELF outside any project: its machine from the header (ARM → mps2-an386, else the host)."""
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        raise InputError(f"{path} is neither an exported project folder nor an ELF file")
    machine = int.from_bytes(header[18:20], "little")
    return "mps2-an386" if machine == 40 else "host"
