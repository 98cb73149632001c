"""converters/tflite_to_c.py: the C array holds the model's exact bytes, 16-byte aligned, as C and as C++."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from edgemnv2_converters.tflite_to_c import write_c_array

DUMP = r"""
#include <stdint.h>
#include <stdio.h>
#include "model_data.h"
int main(void) {
  if (((uintptr_t)g_model) % 16u != 0u) return 3;
  if (g_model_len != G_MODEL_LEN) return 4;
  fwrite(g_model, 1, g_model_len, stdout);
  fprintf(stderr, "%s", G_MODEL_SHA256);
  return 0;
}
"""


@pytest.mark.parametrize("compiler,lang", [("gcc", "c"), ("g++", "c++")])
def test_array_round_trips_aligned(tmp_path: Path, shared_dir: Path, compiler: str, lang: str) -> None:
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} is required")
    model = shared_dir / "models" / "mobilenet_v1_0.25_128_quant.tflite"
    data = model.read_bytes()
    result = write_c_array(model, tmp_path)
    assert result.length == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    assert f"sha256 {result.sha256}" in result.header.read_text()
    (tmp_path / "dump.c").write_text(DUMP)
    exe = tmp_path / "dump"
    subprocess.run([compiler, "-Wall", "-Wextra", "-Werror", "-x", lang, str(result.source), "-x", lang,
                    str(tmp_path / "dump.c"), "-I", str(tmp_path), "-o", str(exe)], check=True, timeout=300)
    run = subprocess.run([str(exe)], capture_output=True, timeout=60)
    assert run.returncode == 0, f"alignment/length check failed with {run.returncode}"
    assert run.stdout == data
    assert run.stderr.decode() == result.sha256


def test_odd_lengths_and_symbol(tmp_path: Path) -> None:
    for length in (0, 1, 15, 16, 17):
        out = tmp_path / str(length)
        result = write_c_array(bytes(range(length)), out, symbol="my_net", basename="net", source_ext=".cpp")
        text = result.source.read_text()
        assert result.source.name == "net.cpp" and "const unsigned char my_net[]" in text
        assert text.count("0x") == length
        assert f"#define MY_NET_LEN {length}u" in result.header.read_text()


def test_bad_symbol_and_extension_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a C identifier"):
        write_c_array(b"x", tmp_path, symbol="9lives")
    with pytest.raises(ValueError, match="source extension"):
        write_c_array(b"x", tmp_path, source_ext=".ino")
