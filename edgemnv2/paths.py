"""Where the shared data lives when the user names none.

The project reads `../shared` (weights mirror, calibration images, reference models) beside the
checkout; `EDGEMNV2_SHARED` overrides it. Nothing here is copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgemnv2.errors import InputError

_REPO_ROOT = Path(__file__).resolve().parent.parent


def env_folder(name: str) -> Path | None:
    """The folder environment variable `name` names, None when it is unset or empty. A set variable that names
    no folder is an error: a typo must not fall back silently to another folder."""
    value = os.environ.get(name)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise InputError(f"{name} points at {value}, which {what}: point it at the folder, or unset it")
    return path


def shared_dir(required: bool = True) -> Path | None:
    """The shared data folder: $EDGEMNV2_SHARED, else ./../shared, else <repo>/../shared."""
    given = env_folder("EDGEMNV2_SHARED")
    if given is not None:
        return given.resolve()
    candidates = [Path.cwd().parent / "shared", _REPO_ROOT.parent / "shared"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    if required:
        raise InputError(
            "no shared data folder found: set EDGEMNV2_SHARED to the folder holding models/ and data/ "
            "(tried " + ", ".join(str(c) for c in candidates) + ")"
        )
    return None


def shared_calibration_dir() -> Path:
    return shared_dir() / "data" / "imagenet-calib"  # type: ignore[operator]


def shared_validation_dir() -> Path:
    """300 further ImageNet images, disjoint from the calibration ones: measure here, never calibrate."""
    return shared_dir() / "data" / "imagenet-val"  # type: ignore[operator]
