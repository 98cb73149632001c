"""One exception hierarchy for the whole library.

The CLI turns any `EdgeMNV2Error` into one line on stderr and the class's `exit_code`; anything else
is a bug and shows a traceback only with `--debug`. Messages say what to do, not just what failed.

Exit codes (documented in the README):
  0 success · 1 error (bad input, missing file, tool failure) · 2 command-line usage (click)
  3 a quality gate or fit check failed · 4 the board or a remote host failed mid-run (partial results kept)
"""

from __future__ import annotations


class EdgeMNV2Error(Exception):
    """Base class: an error the user can act on."""

    exit_code = 1


class InputError(EdgeMNV2Error):
    """A file, folder or option value given by the user is unusable."""


class ModelError(InputError):
    """A model file or model spec cannot be loaded or is not what the command needs."""


class WeightsUnavailable(ModelError):
    """Pretrained weights cannot be found offline and cannot be downloaded."""


class DataError(InputError):
    """An image folder is missing, empty or unreadable."""


class DeviceProfileError(InputError):
    """A device profile is unknown or malformed."""


class OutputError(EdgeMNV2Error):
    """A file or folder the tool writes cannot be written (full disk, read-only, no permission)."""


class ConversionError(EdgeMNV2Error):
    """The converter failed or produced a model that breaks the requested contract."""


class RuntimeUnavailable(EdgeMNV2Error):
    """No interpreter (LiteRT, tflite-runtime, TensorFlow, TFLite Micro) can run the model."""


class ToolMissing(EdgeMNV2Error):
    """An external program (edgetpu_compiler, arduino-cli, ssh, ...) is not installed."""


class BuildError(EdgeMNV2Error):
    """The firmware did not compile or link (the compiler's first error lines say why)."""


class GateFailed(EdgeMNV2Error):
    """A quality gate (top-1 drop, agreement) or a fit check was not met."""

    exit_code = 3


class BoardError(EdgeMNV2Error):
    """The board stopped answering, reset, or reported an error mid-run."""

    exit_code = 4


class DeployError(EdgeMNV2Error):
    """Copying to, installing on or running on a remote board failed."""

    exit_code = 4
