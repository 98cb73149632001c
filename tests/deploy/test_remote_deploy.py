"""`edgemnv2 deploy` against a real sshd on 127.0.0.1: one inference answered with its latency, and every
failure a user can meet (unreachable, auth refused, unknown host key, no space) as one clear line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.deploy import remote
from edgemnv2.errors import DeployError, InputError
from edgemnv2.serial import agent_files

LABELS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imagenet_labels.txt"


def _agent() -> tuple[tuple[Path, str], ...]:
    return tuple((Path(local), name) for name, local in agent_files().items())


@pytest.fixture()
def config(sshd, coral_v2_tflite, tmp_path) -> remote.DeployConfig:
    """Deploy Coral's MobileNetV2 to the loopback board; the runtime already imports there (same Python)."""
    return remote.DeployConfig(
        target="rpi", host=remote.Host.parse(sshd.host), model=coral_v2_tflite, labels=LABELS,
        dest=str(tmp_path / "board-dest"), port=sshd.port, identity=sshd.identity, known_hosts=sshd.known_hosts,
        python=sys.executable, agent_files=_agent(), connect_timeout=5)


def test_deploy_to_loopback_board_answers_one_inference(config: remote.DeployConfig) -> None:
    lines: list[str] = []
    result = remote.deploy(config, echo=lines.append)
    dest = Path(config.dest)
    assert {p.name for p in dest.iterdir()} >= {config.model.name, LABELS.name, *dict(agent_files())}
    assert (dest / config.model.name).read_bytes() == config.model.read_bytes()
    assert result.runtime == "already installed"      # idempotent: the import check skipped pip
    assert not any("pip" in c for c in result.commands)
    assert result.free_bytes and result.free_bytes > 0
    assert result.smoke is not None
    assert result.latency_ms is not None and result.latency_ms > 0
    assert all("StrictHostKeyChecking=yes" in c for c in result.commands if c.startswith(("ssh ", "scp ")))


def test_deploy_cli_prints_latency(sshd, coral_v2_tflite, tmp_path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "edgemnv2", "deploy", "--target", "rpi", "--host", sshd.host, "--port", str(sshd.port),
         "--identity", str(sshd.identity), "--known-hosts", str(sshd.known_hosts), "--dest", str(tmp_path / "d"),
         "--python", sys.executable, "--model", str(coral_v2_tflite), "--labels", str(LABELS), "--json"],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["latency_ms"] > 0 and out["runtime"] == "already installed"


def test_unreachable_host_is_one_line(config: remote.DeployConfig, unused_port: int) -> None:
    with pytest.raises(DeployError, match=r"^cannot reach 127\.0\.0\.1:\d+: .*Connection refused"):
        remote.deploy(dataclasses.replace(config, port=unused_port), echo=lambda _: None)


def test_authentication_refused_is_one_line(config: remote.DeployConfig, make_key) -> None:
    stranger = make_key("stranger")
    with pytest.raises(DeployError, match=r"^authentication refused by .*--identity"):
        remote.deploy(dataclasses.replace(config, identity=stranger), echo=lambda _: None)


def test_unknown_host_key_is_refused_not_trusted(config: remote.DeployConfig, tmp_path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(DeployError, match=r"host key of 127\.0\.0\.1:\d+ is not in .*ssh-keyscan"):
        remote.deploy(dataclasses.replace(config, known_hosts=empty), echo=lambda _: None)
    assert empty.read_text() == ""   # nothing was added behind the user's back


def test_no_space_on_board_stops_before_copying(config: remote.DeployConfig) -> None:
    with pytest.raises(DeployError, match=r"^not enough space on .*MiB free, need .*--min-free"):
        remote.deploy(dataclasses.replace(config, min_free_mb=1e9), echo=lambda _: None)
    assert not (Path(config.dest) / config.model.name).exists()


def test_cli_exit_codes_for_remote_failures(sshd, coral_v2_tflite, tmp_path, unused_port: int) -> None:
    base = [sys.executable, "-m", "edgemnv2", "deploy", "--target", "rpi", "--host", sshd.host,
            "--known-hosts", str(sshd.known_hosts), "--identity", str(sshd.identity), "--python", sys.executable,
            "--model", str(coral_v2_tflite), "--dest", str(tmp_path / "d")]
    for extra, expected in ((["--port", str(unused_port)], "cannot reach"),
                            (["--port", str(sshd.port), "--min-free", "1e9"], "not enough space")):
        res = subprocess.run(base + extra, capture_output=True, text=True, timeout=120)
        assert res.returncode == 4
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1 and expected in errors[0] and "Traceback" not in res.stderr


def test_dry_run_prints_every_command_and_runs_none(coral_v2_tflite, tmp_path) -> None:
    res = CliRunner().invoke(cli, ["deploy", "--target", "coral-devboard", "--transport", "ssh",
                                   "--host", "mendel@board.invalid", "--model", str(coral_v2_tflite),
                                   "--systemd", "--dry-run"])
    assert res.exit_code == 0, res.output
    commands = [ln[2:] for ln in res.output.splitlines() if ln.startswith("$ ")]
    assert commands[0].startswith("ssh -p 22 -o BatchMode=yes -o StrictHostKeyChecking=yes")
    joined = "\n".join(commands)
    for expected in ("mkdir -p -- edgemnv2", "df -Pk -- edgemnv2", "scp -q -P 22", "load_delegate",
                     "apt-get install -y libedgetpu1-std", "systemctl enable --now edgemnv2-agent.service",
                     "--edgetpu on --smoke 1"):
        assert expected in joined
    res = CliRunner().invoke(cli, ["deploy", "--target", "coral-devboard", "--transport", "ssh", "--host",
                                   "mendel@board.invalid", "--model", str(coral_v2_tflite), "--systemd", "--dry-run",
                                   "--json"])
    unit = json.loads(res.stdout)["systemd_unit"]
    assert "--port /dev/ttyGS0 --edgetpu on" in unit and "User=mendel" in unit


def test_host_argument_cannot_smuggle_ssh_options() -> None:
    for bad in ("-oProxyCommand=touch /tmp/x", "pi@host name", "pi@host;reboot", ""):
        with pytest.raises(InputError):
            remote.Host.parse(bad)
    assert str(remote.Host.parse("pi@raspberrypi.local")) == "pi@raspberrypi.local"


def test_df_parsing() -> None:
    out = "Filesystem     1024-blocks    Used Available Capacity Mounted on\n/dev/root 30000000 1000 2048 1% /\n"
    assert remote.parse_df(out) == 2048 * 1024
    with pytest.raises(DeployError):
        remote.parse_df("df: /nope: No such file or directory\n")


def test_runtime_installed_once_then_detected(config: remote.DeployConfig, tmp_path) -> None:
    """A board without the runtime: the check fails, pip runs, the check passes; the next deploy skips pip."""
    marker = tmp_path / "runtime-installed"
    board_python = tmp_path / "python"
    board_python.write_text("#!/bin/sh\n"   # the board's python: pip 'installs' by creating the marker
                            f'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then touch {marker}; exit 0; fi\n'
                            f'if [ "$1" = "-c" ]; then test -f {marker}; exit $?; fi\n'
                            f'exec {sys.executable} "$@"\n')
    board_python.chmod(0o755)
    first = remote.deploy(dataclasses.replace(config, python=str(board_python)), echo=lambda _: None)
    assert first.runtime == "installed" and any("pip install --user ai-edge-litert" in c for c in first.commands)
    assert first.latency_ms is not None and first.latency_ms > 0
    second = remote.deploy(dataclasses.replace(config, python=str(board_python)), echo=lambda _: None)
    assert second.runtime == "already installed" and not any("pip" in c for c in second.commands)
    marker.unlink()
    with pytest.raises(DeployError, match=r"no TFLite runtime imports .* --no-install was given"):
        remote.deploy(dataclasses.replace(config, python=str(board_python), install=False), echo=lambda _: None)
