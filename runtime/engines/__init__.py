"""Inference engines: ONNX Runtime sessions (CPU, CUDA) and OpenVINO, and which one a model may run on."""
