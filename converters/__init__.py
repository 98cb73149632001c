"""Conversion backends, installed as `edgemnv2_converters` so the name cannot collide with other packages.

`keras_to_tflite` is the plain TensorFlow Lite converter backend used by `edgemnv2.convert`.
"""
