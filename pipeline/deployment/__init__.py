"""Exporting trained folds to ONNX, int8 quantization, ONNX Runtime sessions and latency (deploy, predict)."""
