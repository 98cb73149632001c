"""Device profiles: bundled files load, every value has a source, bad files fail with file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edgemnv2.errors import DeviceProfileError
from edgemnv2.profile.devices import known_devices, load_device, load_device_file

REQUIRED = {"rpi4", "rpi5", "rpi-zero2w", "coral-usb", "coral-devboard", "pixel-7", "esp32-s3", "stm32h7",
            "nano33ble", "pico", "qemu-an386", "qemu-an386-reference"}


def test_required_profiles_are_bundled():
    assert REQUIRED <= set(known_devices())


@pytest.mark.parametrize("key", known_devices())
def test_every_value_has_a_source(key):
    """Each value the file itself gives (not one taken from its `base`) has a source; a [board] table one too."""
    device = load_device(key)
    data = tomllib.loads(device.path.read_text(encoding="utf-8"))
    values = [k for k in data if k not in ("sources", "cpu", "edgetpu", "calibration", "kind", "runtime", "threads",
                                           "psram_bytes", "aliases", "base", "board")]
    values += [f"cpu.{k}" for k in data.get("cpu", {})] + [f"edgetpu.{k}" for k in data.get("edgetpu", {})]
    missing = [k for k in values if k not in device.sources]
    assert not missing, f"{key}: no source for {missing}"
    assert "source" in data.get("board", {"source": ""}), f"{key}: [board] has no source"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "board.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_user_profile_loads(tmp_path, rpi4_toml_text):
    device = load_device_file(_write(tmp_path, rpi4_toml_text.replace("clock_mhz = 1500", "clock_mhz = 1800")))
    assert device.key == "board" and device.clock_mhz == 1800


@pytest.mark.parametrize("old,new,expected", [
    ('kind = "linux"', 'kind = "fpga"', "key 'kind' must be one of linux, mcu, edgetpu"),
    ("clock_mhz = 1500", 'clock_mhz = "fast"', "key 'clock_mhz' must be float"),
    ("cores = 4\n", "", "key 'cores' is missing"),
    ("depthwise = 2.0", "depthwize = 2.0", "key 'cpu.int8_macs_per_cycle.depthwize' is not an op kind; allowed:"),
    ("parallel_efficiency = 0.8", "parallel_efficiency = 1.7", "key 'cpu.parallel_efficiency' must be in (0, 1]"),
    ("simd =", "simdd =", "key 'simdd' is not a profile key; allowed:"),
])
def test_malformed_profile_names_file_and_key(tmp_path, rpi4_toml_text, old, new, expected):
    assert old in rpi4_toml_text
    path = _write(tmp_path, rpi4_toml_text.replace(old, new, 1))
    with pytest.raises(DeviceProfileError) as err:
        load_device_file(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(DeviceProfileError, match="not valid TOML"):
        load_device_file(_write(tmp_path, "name = [unclosed"))
    with pytest.raises(DeviceProfileError, match="does not exist"):
        load_device_file(tmp_path / "nope.toml")


def test_unknown_device_lists_known_ones():
    with pytest.raises(DeviceProfileError) as err:
        load_device("rpi9")
    assert "unknown device 'rpi9'" in str(err.value) and "rpi4" in str(err.value) and "stm32h7" in str(err.value)
