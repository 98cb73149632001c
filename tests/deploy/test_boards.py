"""One hardware registry: every board key is a device profile or a build target, old names still resolve, and
no fact is written twice (a [board] table that repeats a profile or memory-map fact is refused)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edgemnv2.deploy import boards
from edgemnv2.errors import DeviceProfileError, InputError
from edgemnv2.firmware.targets import load_targets
from edgemnv2.profile import devices
from edgemnv2.profile.devices import canonical_key, known_devices, load_device, load_device_file

OLD_NAMES = {"nano33ble-sense": ("nano33ble", "arduino"), "esp32s3": ("esp32-s3", "esp-idf")}


def test_every_board_key_is_one_profile_or_one_build_target():
    profiles, targets = set(known_devices()), set(load_targets())
    for board in boards.load_boards().values():
        assert (board.name in profiles) != (board.name in targets), board.name
        if board.name in profiles:
            device = load_device(board.name)
            assert (board.cpu_hz, board.ram_bytes, board.flash_bytes, board.psram_bytes, board.title) == (
                round(device.clock_mhz * 1e6), device.ram_bytes, device.flash_bytes, device.psram_bytes, device.name)
        else:
            assert board.target == board.name
    assert {"nano33ble", "portenta-h7", "esp32-s3", "pico", "nucleo-h743zi", "mps2-an386", "mps3-an547",
            "host"} == set(boards.load_boards())


@pytest.mark.parametrize("old,new", [(old, new) for old, (new, _) in OLD_NAMES.items()])
def test_old_names_resolve_to_the_one_key(old, new):
    target = OLD_NAMES[old][1]
    assert canonical_key(old) == new
    assert load_device(old).key == new
    assert boards.resolve_board(target, old).name == new
    assert boards.resolve_board(target, new).name == new


def test_a_board_of_another_target_is_refused_with_its_keys():
    with pytest.raises(InputError, match=r"unknown board 'pico' for target arduino; choose one of: nano33ble, "
                                         r"portenta-h7"):
        boards.resolve_board("arduino", "pico")


def test_base_profile_takes_the_chip_and_changes_the_board():
    base, portenta = load_device("stm32h7"), load_device("portenta-h7")
    assert portenta.cpu == base.cpu and portenta.ram_bytes == base.ram_bytes
    assert (portenta.clock_mhz, base.clock_mhz) == (480, 400) and portenta.psram_bytes == 8 * 2**20
    own = tomllib.loads(portenta.path.read_text(encoding="utf-8"))
    assert "cpu" not in own and "ram_bytes" not in own, "portenta-h7.toml repeats a fact of stm32h7.toml"


def test_user_profile_may_build_on_a_bundled_one(tmp_path):
    path = tmp_path / "my-h7.toml"
    path.write_text('base = "stm32h7"\nname = "my H7"\nclock_mhz = 240\n\n[sources]\nname = "mine"\n', encoding="utf-8")
    device = load_device_file(path)
    assert (device.key, device.clock_mhz, device.cpu) == ("my-h7", 240, load_device("stm32h7").cpu)
    path.write_text('base = "stm32h9"\n', encoding="utf-8")
    with pytest.raises(DeviceProfileError, match="key 'base' must name a bundled device"):
        load_device_file(path)


def test_board_table_repeating_a_profile_fact_is_refused(tmp_path):
    text = (Path(str(load_device("pico").path))).read_text(encoding="utf-8")
    path = tmp_path / "pico2.toml"
    path.write_text(text.replace('pico_board = "pico"', 'pico_board = "pico"\nram_bytes = 270336'), encoding="utf-8")
    with pytest.raises(DeviceProfileError, match=r"\[board\] has keys \['ram_bytes'\] that do not belong there"):
        boards._from_profile(load_device_file(path))


def test_emulated_board_memory_comes_from_the_memory_map():
    an386 = load_targets()["mps2-an386"]
    board = boards.load_boards()["mps2-an386"]
    assert board.ram_bytes == an386.region("SSRAM23").length
    assert board.flash_bytes == an386.region("SSRAM1").length + an386.region("PSRAM").length
    assert "ram_bytes" not in an386.board


def test_an_alias_that_shadows_a_key_is_refused(tmp_path, monkeypatch):
    for key in ("pico", "nano33ble"):
        (tmp_path / f"{key}.toml").write_text(Path(str(load_device(key).path)).read_text(encoding="utf-8"))
    (tmp_path / "pico.toml").write_text('aliases = ["nano33ble"]\n' + (tmp_path / "pico.toml").read_text())
    monkeypatch.setattr(devices, "_devices_dir", lambda: tmp_path)
    devices.device_aliases.cache_clear()
    try:
        with pytest.raises(DeviceProfileError, match="alias 'nano33ble' is already a device key"):
            devices.device_aliases()
    finally:
        devices.device_aliases.cache_clear()


@pytest.mark.parametrize("name,family", [("rpi", "rpi"), ("rpi4", "rpi"), ("rpi5", "rpi"), ("rpi-zero2w", "rpi"),
                                         ("coral-devboard", "coral-devboard")])
def test_deploy_takes_the_device_keys(name, family):
    from edgemnv2.deploy import remote

    assert remote.resolve_target(name) == family
    assert name == "rpi" or load_device(name).key == name   # the same key profiles the board


def test_deploy_refuses_a_microcontroller_key_with_the_choices():
    from edgemnv2.deploy import remote

    with pytest.raises(InputError, match=r"--target 'pico': use one of rpi, coral-devboard, rpi-zero2w, rpi4, rpi5"):
        remote.resolve_target("pico")
