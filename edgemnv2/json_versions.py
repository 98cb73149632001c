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
PROFILE_MODEL = 1     # profile --json without --device: ModelReport (costs, weights, TFLite Micro arena plan)
DEVICES = 2           # devices --json: {devices: [profile summary]} (1 was a bare list)
CALIBRATE = 1         # devices calibrate --json: CalibrationReport
EXPORT = 1            # export --json: the export result (project files, arena, build commands; or the static engine)
BUILD = 1             # build --json: the build result (ELF, sizes, sources)
FLASH = 1             # flash --json: the flash plan/result
DEPLOY = 1            # deploy --json: the deploy result
BENCH = 1             # bench --json: BenchReport (also for a partial report after an interrupted run)

# Reports that stamp their own version (the CLI passes that constant, and refuses a mismatch):
#   fit --json: edgemnv2.fit.SCHEMA_VERSION · sweep --json: edgemnv2.sweep.SCHEMA_VERSION
#   profile --schedule --json: edgemnv2.profile.schedule_report.SCHEMA_VERSION
#   edgetpu check|compile --json: edgemnv2.deploy.edgetpu.SCHEMA_VERSION
