"""Getting a model onto hardware: Edge TPU checks and compilation (`edgetpu`), copying to and running on
Linux boards over ssh/scp or mdt (`remote`), phone packages with TFLite metadata (`phone`), and rendered
firmware projects and flashing (`export`, `flash`). Nothing here imports TensorFlow.
"""
