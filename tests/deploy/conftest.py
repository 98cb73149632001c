"""A real OpenSSH server on 127.0.0.1 as the "board": throwaway host key and user key, all state in tmp."""

from __future__ import annotations

import dataclasses
import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgemnv2-test", "-f", str(path)], check=True)
    return path


@pytest.fixture()
def unused_port() -> int:
    return free_port()


@pytest.fixture()
def make_key(tmp_path):
    """Make a fresh ed25519 key pair in tmp (one the board does not know)."""
    return lambda name: keygen(tmp_path / name)


@dataclasses.dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    identity: Path          # private key the server accepts
    known_hosts: Path       # holds the server's host key
    root: Path              # tmp folder for destinations

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1"


def _wait_ready(proc: subprocess.Popen, port: int, log: Path, deadline_s: float = 15.0) -> None:
    """Connect until sshd sends its SSH banner; bounded, and fails early if sshd exits."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            # not listening yet: wait for the process to change state rather than spinning
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
    raise RuntimeError(f"sshd did not answer on port {port} within {deadline_s} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> Sshd:
    if not SSHD.exists() or shutil.which("ssh") is None:
        pytest.skip("OpenSSH server/client not installed (apt-get install openssh-server openssh-client; .ci/run does)")
    tmp = tmp_path_factory.mktemp("sshd")
    host_key = keygen(tmp / "host_ed25519")
    user_key = keygen(tmp / "user_ed25519")
    (tmp / "authorized_keys").write_text((tmp / "user_ed25519.pub").read_text())
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {tmp / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}", "StrictModes no", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
        "UsePAM no", "Subsystem sftp internal-sftp", "LogLevel VERBOSE", ""]))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)   # privilege separation directory sshd insists on
    log = tmp / "sshd.log"
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))
    try:
        _wait_ready(proc, port, log)
        known = tmp / "known_hosts"
        key_type, key = Path(f"{host_key}.pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{port} {key_type} {key}\n")
        yield Sshd(port=port, user=getpass.getuser(), identity=user_key, known_hosts=known,
                   root=tmp_path_factory.mktemp("board"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
