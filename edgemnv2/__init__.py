"""edgemnv2: MobileNetV2 from Keras to int8 TFLite, validated, profiled, timed on the board, deployed.

Every CLI command is a thin wrapper over a library function in one of the stage modules
(`models`, `data`, `convert`, `validate`, `profile`, `serial`, `deploy`); import those directly.
"""

__version__ = "0.1.0"
