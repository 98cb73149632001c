"""Logging set-up: diagnostics on stderr; TensorFlow's noise silenced unless -v."""

from __future__ import annotations

import logging
import os
import warnings

# Quiet defaults for TensorFlow's C++ and absl logs; a user's own setting always wins.
_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "ABSL_MIN_LOG_LEVEL": "3",
              "GRPC_VERBOSITY": "ERROR"}
_NOISY_LOGGERS = ("tensorflow", "absl", "h5py", "keras")
_env_set_here: set[str] = set()


def configure(verbose: int = 0) -> None:
    """Silence TensorFlow/absl log noise unless verbose; must run before TensorFlow is imported.

    May run again with a higher count (`-v` given after the subcommand): the quiet defaults set here are
    taken back, so the later -v counts as much as one before the subcommand.
    """
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    if verbose:
        for key in _env_set_here:
            os.environ.pop(key, None)
        _env_set_here.clear()
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        return
    for key, value in _QUIET_ENV.items():
        if key not in os.environ:
            os.environ[key] = value
            _env_set_here.add(key)
    warnings.filterwarnings("ignore", module="tensorflow")
    warnings.filterwarnings("ignore", module="keras")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
