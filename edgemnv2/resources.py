"""The data files edgemnv2 reads at run time, found with `importlib.resources` so an installed wheel works.

Facts (device profiles, Edge TPU rules, boards, TFLite Micro kernel facts) live beside the code that reads
them inside the `edgemnv2` package; the top-level `firmware_templates/` folder of the checkout is installed
as the package `edgemnv2.firmware_templates` (pyproject.toml maps it). Every reader goes through here, so
nothing depends on where a checkout is.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from edgemnv2.errors import InputError

TEMPLATES_PACKAGE = "edgemnv2.firmware_templates"


def data_file(relative: str) -> Traversable:
    """A file or folder shipped in the edgemnv2 package, by its path under edgemnv2/ ("deploy/tflm_ops.toml")."""
    return resources.files("edgemnv2").joinpath(*relative.split("/"))


def templates_root() -> Path:
    """The installed firmware_templates/ folder (C sources, board code, the Linux agent) as a folder on disk.

    Exported projects copy from it and `deploy` scp's the agent from it, so it must be real files: pip
    always installs packages unpacked, and a zipped install is refused with one line.
    """
    try:
        root = resources.files(TEMPLATES_PACKAGE)
    except ModuleNotFoundError:
        raise InputError(f"the firmware templates ({TEMPLATES_PACKAGE}) are not installed: reinstall edgemnv2 "
                         "(in a checkout: pip install --no-deps -e .)") from None
    if not isinstance(root, Path):
        raise InputError(f"the firmware templates are inside an archive ({root}): install edgemnv2 unpacked "
                         "(pip install edgemnv2)")
    return root
