"""Phone export: TFLite metadata written with the flatbuffers builder, read back, and the model still runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edgemnv2.deploy import phone
from edgemnv2.errors import InputError


@pytest.fixture(scope="module")
def labels(shared_dir: Path) -> Path:
    return shared_dir / "data" / "imagenet_labels.txt"


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(i["index"], x.astype(i["dtype"]))
    it.invoke()
    return it.get_tensor(o["index"]), i, o


def test_reader_understands_the_official_writer(coral_v2_tflite: Path) -> None:
    """Coral's model carries metadata made by tflite-support's own writer: our reader must agree with it."""
    info = phone.read_metadata(coral_v2_tflite.read_bytes())
    assert info.min_parser_version == "1.0.0"
    assert info.inputs[0].content == "image" and info.inputs[0].mean == (127.5,) and info.inputs[0].std == (127.5,)
    assert info.outputs[0].label_files == ("imagenet_labels.txt",)
    assert len(info.associated_files["imagenet_labels.txt"].decode().splitlines()) == 1001


def test_int8_model_gets_metadata_labels_and_uint8_io(int8_mnv2_96: Path, labels: Path, tmp_path: Path) -> None:
    out = tmp_path / "android" / "mnv2_metadata.tflite"
    result = phone.add_metadata(int8_mnv2_96, labels, out)
    assert result.classes == 1000 and result.input_type == "uint8" and result.output_type == "uint8"

    info = phone.read_metadata(out.read_bytes())   # parse the buffer again
    inp, outp = info.inputs[0], info.outputs[0]
    assert inp.content == "image" and inp.image_size == (96, 96)
    assert (inp.mean, inp.std) == ((127.5,), (127.5,)) and (inp.stats_min, inp.stats_max) == ((0.0,), (255.0,))
    assert outp.content == "feature" and outp.label_files == (phone.LABELS_NAME,)
    names = info.associated_files[phone.LABELS_NAME].decode().splitlines()
    assert len(names) == 1000 and names[0].startswith("tench")   # background dropped for 1000 classes
    assert info.description and info.name == int8_mnv2_96.stem and info.min_parser_version == "1.0.0"

    # the model still runs in LiteRT and answers exactly like the original: uint8 = int8 + 128
    pixels = np.random.default_rng(0).integers(0, 256, (1, 96, 96, 3))
    ours, i, o = _run(out, pixels)
    theirs, _, _ = _run(int8_mnv2_96, pixels - 128)
    assert i["dtype"] == np.uint8 and o["dtype"] == np.uint8
    assert np.array_equal(ours.astype(np.int16), theirs.astype(np.int16) + 128)


def test_1001_class_model_keeps_background_and_replaces_old_metadata(coral_v2_tflite: Path, labels: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "coral_metadata.tflite"
    result = phone.add_metadata(coral_v2_tflite, labels, out, name="MobileNetV2 Coral")
    assert result.classes == 1001 and result.changes == ()   # already uint8 I/O
    info = phone.read_metadata(out.read_bytes())
    assert info.name == "MobileNetV2 Coral"
    assert info.associated_files[phone.LABELS_NAME].decode().splitlines()[0] == "background"
    pixels = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3))
    assert np.array_equal(_run(out, pixels)[0], _run(coral_v2_tflite, pixels)[0])


def test_label_count_mismatch_is_one_clear_line(int8_mnv2_96: Path, tmp_path: Path) -> None:
    few = tmp_path / "labels.txt"
    few.write_text("cat\ndog\n")
    with pytest.raises(InputError, match=r"has 2 labels but the model has 1000 classes"):
        phone.add_metadata(int8_mnv2_96, few, tmp_path / "x.tflite")


@pytest.mark.parametrize("target", ["android", "ios"])
def test_render_phone_project(target: str, int8_mnv2_96: Path, labels: Path, tmp_path: Path) -> None:
    result = phone.render_phone(target, int8_mnv2_96, tmp_path, labels)
    readme = (tmp_path / "README.md").read_text()
    assert result.model.is_file() and (tmp_path / phone.LABELS_NAME).is_file()
    assert result.model.name in readme and ("ImageClassifier" in readme)
