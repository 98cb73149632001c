"""The C firmware as a product: build targets (targets.toml), `edgemnv2 build` (build.py) against a TensorFlow
Lite Micro source tree, and the emulated board (emulator.py) that runs the built firmware in QEMU or natively."""
