"""Offline side of sage_ros: training, distillation, quantization, latent ablation, evaluation, export.

Imports torch (unlike runtime/ and data/). Submodules are imported explicitly, never from here, so that
`import sage_ros.compression.progress` or `.jobs` stays cheap for the compression_node.
"""
