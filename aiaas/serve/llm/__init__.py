"""Language-model serving: an iteration-level batching engine over ONNX Runtime."""
