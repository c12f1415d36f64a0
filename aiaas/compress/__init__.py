"""Compression: prune (PyTorch), distill (PyTorch), quantize (ONNX), each variant measured
on held-out data, the fastest within an accuracy budget kept.

Nothing is imported here, so `aiaas.compress.cli` registers `aiaas compress` without
pulling torch into other commands. Entry points: `pipeline.Compressor` (Python),
`command.run` (the CLI's work).
"""
