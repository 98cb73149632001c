"""Firmware templates, installed as the package `edgemnv2.firmware_templates` (data only; see edgemnv2/resources.py)."""
