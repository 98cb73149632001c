"""The `schema_version` of every JSON document edgemnv2 prints (`--json`) or writes beside its outputs.

One constant per kind of report. A kind's number goes up when one of its fields is renamed, removed or
changes meaning; adding a field keeps it, so a script that checks `schema_version` keeps working until
what it reads really changed. The CLI prints `schema_version` as the first key of every `--json` object.
"""

from __future__ import annotations

from edgemnv2.sidecar import SIDECAR_SCHEMA_VERSION

CONVERT = SIDECAR_SCHEMA_VERSION   # convert --json: the sidecar (<model>.tflite.json) plus model and sidecar paths
VALIDATE = 1          # validate --json / --output: ValidationReport (+ passed, per_layer)
RUN = 1               # run --json: conversion (the sidecar), validation, profiles
PROFILE = 1           # profile --json: ProfileReport, or {model, devices: [ProfileReport]} for several devices
DEVICES = 1           # devices --json: {devices: [profile summary]}
FIT = 1               # fit --json
EDGETPU_CHECK = 1     # edgetpu check --json: EdgeTpuReport
EDGETPU_COMPILE = 1   # edgetpu compile --json: EdgeTpuReport from the compiler's log
EXPORT = 1            # export --json: the export result (project files, arena, build commands)
FLASH = 1             # flash --json: the flash plan/result
DEPLOY = 1            # deploy --json: the deploy result
BENCH = 1             # bench --json: BenchReport (also for a partial report after an interrupted run)
