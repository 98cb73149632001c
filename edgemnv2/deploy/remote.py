"""Deploy a model and the linux agent to a Raspberry Pi or a Coral Dev Board, then time one inference there.

Every remote action is an argument list for `ssh`/`scp` (or `mdt` on a Coral Dev Board) run with
`subprocess` — never a local shell string. The remote side of ssh always goes through the board's login
shell, so remote argument lists are quoted with `shlex.join`. Host keys are checked
(`StrictHostKeyChecking=yes`, `BatchMode=yes`): an unknown board is refused with the command that adds
its key, never trusted silently.

The steps, in order: create the destination and check its free space (`df`), copy model, labels and
agent, make sure a TFLite runtime imports (install it only when it does not), optionally install a
systemd unit, and run the agent's smoke mode, which prints one JSON line with its latency.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from edgemnv2.deploy.boards import linux_boards
from edgemnv2.errors import DeployError, InputError, ToolMissing
from edgemnv2.profile.devices import canonical_key

_HOST_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?(?P<host>[A-Za-z0-9_][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])$")
AGENT_SCRIPT = "agent.py"
UNIT_NAME = "edgemnv2-agent.service"


@dataclasses.dataclass(frozen=True)
class Target:
    """What a board needs: how to test that a runtime imports, how to install it, how the agent runs."""
    name: str
    runtime_probe: str            # Python code run on the board; exit 0 when the runtime is usable
    install: tuple[tuple[str, ...], ...]   # commands; "{python}" is replaced by the board's interpreter
    agent_args: tuple[str, ...]   # extra agent arguments for this board
    prefers_mdt: bool


TARGETS: dict[str, Target] = {
    "rpi": Target(
        name="Raspberry Pi (Raspberry Pi OS, 64-bit)",
        runtime_probe='import importlib.util as u, sys; '
                      'sys.exit(0 if u.find_spec("ai_edge_litert") or u.find_spec("tflite_runtime") else 1)',
        install=(("{python}", "-m", "pip", "install", "--user", "ai-edge-litert"),),
        agent_args=(),
        prefers_mdt=False),
    "coral-devboard": Target(
        name="Coral Dev Board (Mendel Linux, Edge TPU)",
        runtime_probe='import tflite_runtime.interpreter as t; t.load_delegate("libedgetpu.so.1")',
        install=(("sudo", "-n", "apt-get", "install", "-y", "libedgetpu1-std", "python3-tflite-runtime"),),
        agent_args=("--edgetpu", "on"),
        prefers_mdt=True),
}


def deploy_targets() -> list[str]:
    """What `deploy --target` takes: a family above, or a device key whose profile names one."""
    return [*TARGETS, *(key for key in linux_boards() if key not in TARGETS)]


def resolve_target(name: str) -> str:
    """The family (a TARGETS key) for a family, a device key (rpi4) or an old name of one."""
    if name in TARGETS:
        return name
    family = linux_boards().get(canonical_key(name))
    if family not in TARGETS:
        raise InputError(f"--target {name!r}: use one of {', '.join(deploy_targets())}")
    return family


@dataclasses.dataclass(frozen=True)
class Host:
    user: str | None
    host: str

    @classmethod
    def parse(cls, text: str) -> "Host":
        """USER@HOST or HOST; anything that could be read as an ssh option or a second argument is refused."""
        m = _HOST_RE.match(text or "")
        if not m:
            raise InputError(f"--host {text!r} is not USER@HOST (letters, digits, '.', '-', '_'; IPv6 in [brackets])")
        return cls(user=m.group("user"), host=m.group("host"))

    def __str__(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


@dataclasses.dataclass(frozen=True)
class Connection:
    """How to reach the board: ssh options, or the Mendel Development Tool."""
    host: Host
    port: int = 22
    identity: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: int = 10
    use_mdt: bool = False

    def _ssh_options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "LogLevel=ERROR"]
        if self.known_hosts is not None:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity is not None:
            opts += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return opts

    def run_argv(self, remote: Sequence[str]) -> list[str]:
        """Local argv that runs `remote` (an argument list) on the board."""
        if self.use_mdt:
            return ["mdt", "exec", shlex.join(remote)]
        return ["ssh", "-p", str(self.port), *self._ssh_options(), "--", str(self.host), shlex.join(remote)]

    def copy_argv(self, files: Sequence[tuple[Path, str]], dest: str) -> list[list[str]]:
        """Local argv lists that copy (local file, name on the board) pairs into the board's directory `dest`."""
        if self.use_mdt:
            return [["mdt", "push", str(local), f"{dest}/{name}"] for local, name in files]
        prefix = f"{self.host.user + '@' if self.host.user else ''}{self.host.host}:{dest}/"
        scp = ["scp", "-q", "-P", str(self.port), *self._ssh_options(), "--"]
        same_name = [str(local) for local, name in files if Path(local).name == name]
        renamed = [[*scp, str(local), prefix + name] for local, name in files if Path(local).name != name]
        return ([[*scp, *same_name, prefix]] if same_name else []) + renamed


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    target: str
    host: Host
    model: Path
    labels: Path | None = None
    dest: str = "edgemnv2"       # relative paths are under the remote user's home
    port: int = 22
    identity: Path | None = None
    known_hosts: Path | None = None
    python: str = "python3"
    install: bool = True
    systemd: bool = False
    min_free_mb: float = 20.0    # kept free on the board on top of the copied files
    smoke_runs: int = 1
    transport: str = "auto"      # auto | ssh | mdt
    serial_port: str = "/dev/ttyGS0"   # what the systemd-run agent serves (USB gadget serial)
    connect_timeout: int = 10
    agent_files: tuple[tuple[Path, str], ...] = ()   # (local file, name on the board)


@dataclasses.dataclass
class DeployResult:
    target: str
    host: str
    dest: str
    transport: str
    dry_run: bool
    files: list[dict] = dataclasses.field(default_factory=list)
    free_bytes: int | None = None
    runtime: str = "not checked"
    systemd_unit: str | None = None
    smoke: dict | None = None
    latency_ms: float | None = None
    commands: list[str] = dataclasses.field(default_factory=list)


Echo = Callable[[str], None]


def _stderr_echo(line: str) -> None:
    print(line, file=sys.stderr)


class _Runner:
    """Runs (or, for --dry-run, only prints) commands, and turns ssh's failures into one clear line."""

    def __init__(self, conn: Connection, dry_run: bool, echo: Echo, result: DeployResult):
        self.conn, self.dry_run, self.echo, self.result = conn, dry_run, echo, result

    def __call__(self, argv: list[str], what: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess | None:
        line = shlex.join(argv)
        self.result.commands.append(line)
        self.echo(f"$ {line}" if self.dry_run else f"-- {what}")
        if self.dry_run:
            return None
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DeployError(f"{what} on {self.conn.host} did not finish within {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise self.failure(proc, what)
        return proc

    def failure(self, proc: subprocess.CompletedProcess, what: str) -> DeployError:
        err = (proc.stderr or "").strip()
        host, port = self.conn.host, self.conn.port
        where = f"{host.host}:{port}"
        if proc.returncode == 255 or self.conn.use_mdt:
            if "Permission denied" in err or "Too many authentication failures" in err:
                return DeployError(f"authentication refused by {host} (port {port}): pass --identity KEY whose public "
                                   f"key is in the board's ~/.ssh/authorized_keys (ssh-copy-id -p {port} {host})")
            if "IDENTIFICATION HAS CHANGED" in err:
                return DeployError(f"the host key of {where} has CHANGED since it was recorded: if the board was "
                                   f"re-imaged, remove the old key (ssh-keygen -R '[{host.host}]:{port}'), else stop")
            if "Host key verification failed" in err or "host key is known" in err:
                kh = self.conn.known_hosts or "~/.ssh/known_hosts"
                return DeployError(f"the host key of {where} is not in {kh}: check its fingerprint, then add it "
                                   f"(ssh-keyscan -p {port} {host.host} >> {kh}) or pass --known-hosts FILE")
            for marker in ("Connection refused", "timed out", "No route to host", "Could not resolve hostname",
                           "Network is unreachable", "Connection closed", "Connection reset",
                           "kex_exchange_identification"):
                if marker in err:
                    return DeployError(f"cannot reach {where}: {_last_line(err)} (is the board on, on this "
                                       "network, and running sshd on that port?)")
        return DeployError(f"{what} failed on {host} (exit {proc.returncode}): {_last_line(err or proc.stdout)}")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def parse_df(output: str) -> int:
    """Available bytes from `df -Pk DIR` (POSIX format: the 4th column of the last line, in KiB)."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    try:
        return int(lines[-1].split()[3]) * 1024
    except (IndexError, ValueError) as exc:
        raise DeployError(f"cannot read the free space from df: {output.strip()[:200]!r}") from exc


def systemd_unit(config: DeployConfig, dest_abs: str) -> str:
    """A unit that keeps the agent running (serving the board's serial link) across reboots."""
    user = config.host.user or "root"
    args = [config.python, f"{dest_abs}/{AGENT_SCRIPT}", "--model", f"{dest_abs}/{Path(config.model).name}",
            "--port", config.serial_port, *TARGETS[config.target].agent_args]
    return "\n".join([
        "[Unit]",
        f"Description=edgemnv2 linux agent for {config.model.name}",
        "After=network.target",
        "",
        "[Service]",
        f"User={user}",
        f"WorkingDirectory={dest_abs}",
        f"ExecStart={shlex.join(args)}",
        "Restart=on-failure",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def _resolve_transport(config: DeployConfig) -> bool:
    """True when mdt is used: asked for, or automatic on a Coral Dev Board when mdt is installed."""
    if config.transport not in ("auto", "ssh", "mdt"):
        raise InputError(f"--transport {config.transport!r}: use auto, ssh or mdt")
    if config.transport == "mdt":
        if shutil.which("mdt") is None:
            raise ToolMissing("mdt is not on PATH: `python3 -m pip install --user mendel-development-tool`, "
                              "or use --transport ssh")
        return True
    return (config.transport == "auto" and TARGETS[config.target].prefers_mdt and shutil.which("mdt") is not None
            and config.identity is None and config.port == 22)


def deploy(config: DeployConfig, dry_run: bool = False, echo: Echo = _stderr_echo) -> DeployResult:
    """Copy, install, (optionally) enable, then run one smoke inference on the board."""
    config = dataclasses.replace(config, target=resolve_target(config.target))
    target = TARGETS[config.target]
    files = [(Path(config.model), Path(config.model).name),
             *([(Path(config.labels), Path(config.labels).name)] if config.labels else []),
             *((Path(local), name) for local, name in config.agent_files)]
    for local, _ in files:
        if not local.is_file():
            raise InputError(f"file to deploy not found: {local}")
    if AGENT_SCRIPT not in {name for _, name in config.agent_files}:
        raise InputError(f"the linux agent ({AGENT_SCRIPT}) is not among the agent files "
                         f"{[name for _, name in config.agent_files]}")
    if config.identity is not None and not Path(config.identity).is_file():
        raise InputError(f"--identity {config.identity}: no such key file")
    if config.known_hosts is not None and not Path(config.known_hosts).exists():
        raise InputError(f"--known-hosts {config.known_hosts}: no such file")
    use_mdt = _resolve_transport(config)
    if not use_mdt and shutil.which("ssh") is None:
        raise ToolMissing("ssh/scp are not on PATH: install the OpenSSH client (apt-get install openssh-client)")
    conn = Connection(host=config.host, port=config.port, identity=config.identity, known_hosts=config.known_hosts,
                      connect_timeout=config.connect_timeout, use_mdt=use_mdt)
    result = DeployResult(target=config.target, host=str(config.host), dest=config.dest,
                          transport="mdt" if use_mdt else "ssh", dry_run=dry_run,
                          files=[{"name": name, "bytes": local.stat().st_size} for local, name in files])
    run = _Runner(conn, dry_run, echo, result)
    dest = config.dest.rstrip("/") or "."

    run(conn.run_argv(["mkdir", "-p", "--", dest]), "connect and create the destination")
    needed = sum(f["bytes"] for f in result.files) + int(config.min_free_mb * 2**20)
    df = run(conn.run_argv(["df", "-Pk", "--", dest]), "check free space")
    if df is not None:
        result.free_bytes = parse_df(df.stdout)
        if result.free_bytes < needed:
            raise DeployError(f"not enough space on {config.host}:{dest}: {result.free_bytes / 2**20:.1f} MiB free, "
                              f"need {needed / 2**20:.1f} MiB (files + --min-free {config.min_free_mb:g} MiB)")

    for argv in conn.copy_argv(files, dest):
        run(argv, f"copy {len(files)} files")

    probe_argv = conn.run_argv([config.python, "-c", target.runtime_probe])
    installs = [[config.python if part == "{python}" else part for part in cmd] for cmd in target.install]
    probe = run(probe_argv, "check the TFLite runtime", check=False)
    if probe is not None and probe.returncode == 255 and not use_mdt:
        raise run.failure(probe, "check the TFLite runtime")   # ssh itself failed, not the import
    if probe is not None and probe.returncode == 0:
        result.runtime = "already installed"
    elif not config.install:
        if not dry_run:
            raise DeployError(f"no TFLite runtime imports with {config.python} on {config.host} and --no-install "
                              f"was given: install one ({shlex.join(installs[0])}) or drop --no-install")
        result.runtime = "skipped (--no-install)"
    else:
        if dry_run:
            echo("# only when the check above fails:")
        for argv in installs:
            proc = run(conn.run_argv(argv), "install the TFLite runtime", check=False)
            if proc is not None and proc.returncode != 0:
                hint = (" (the system Python is externally managed: make a venv on the board and pass "
                        "--python VENV/bin/python)") if "externally-managed" in (proc.stderr or "") else ""
                raise DeployError(f"installing the runtime failed on {config.host}: {_last_line(proc.stderr)}{hint}")
        if dry_run:
            result.runtime = "install (only when the check above fails)"
        else:
            recheck = run(probe_argv, "check the TFLite runtime again", check=False)
            if recheck.returncode != 0:
                raise DeployError(f"the runtime was installed on {config.host} but still does not import with "
                                  f"{config.python}: {_last_line(recheck.stderr)}")
            result.runtime = "installed"

    if config.systemd:
        dest_abs = dest
        if not dry_run and not dest.startswith("/"):
            dest_abs = run(conn.run_argv(["realpath", "--", dest]), "resolve the destination").stdout.strip()
        unit = systemd_unit(config, dest_abs)
        result.systemd_unit = unit
        unit_file = _write_temp_unit(unit)
        try:
            for argv in conn.copy_argv([(unit_file, UNIT_NAME)], dest):
                run(argv, "copy the systemd unit")
        finally:
            shutil.rmtree(unit_file.parent, ignore_errors=True)
        for argv in (["sudo", "-n", "install", "-m", "644", f"{dest}/{UNIT_NAME}", f"/etc/systemd/system/{UNIT_NAME}"],
                     ["sudo", "-n", "systemctl", "daemon-reload"],
                     ["sudo", "-n", "systemctl", "enable", "--now", UNIT_NAME]):
            run(conn.run_argv(argv), "install the systemd unit")

    smoke_argv = [config.python, f"{dest}/{AGENT_SCRIPT}", "--model", f"{dest}/{Path(config.model).name}",
                  *target.agent_args, "--smoke", str(config.smoke_runs)]
    proc = run(conn.run_argv(smoke_argv), "run the smoke inference", timeout=300)
    if proc is not None:
        result.smoke = parse_smoke(proc.stdout)
        result.latency_ms = _latency_ms(result.smoke)
    return result


def _write_temp_unit(text: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="edgemnv2-unit-"))
    path = folder / UNIT_NAME
    path.write_text(text)
    return path


def parse_smoke(stdout: str) -> dict:
    """The agent's smoke mode prints one JSON object on a line; take the last such line."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise DeployError(f"the agent's smoke run printed no JSON result: {_last_line(stdout)!r}")


def _latency_ms(smoke: dict) -> float | None:
    """Accept the agent's latency in ms or µs, under the names a smoke report plausibly uses."""
    for key, scale in (("latency_ms", 1.0), ("mean_ms", 1.0), ("latency_us", 1e-3), ("mean_us", 1e-3)):
        value = smoke.get(key)
        if isinstance(value, dict):
            value = value.get("mean")
        if isinstance(value, (int, float)):
            return float(value) * scale
    return None
