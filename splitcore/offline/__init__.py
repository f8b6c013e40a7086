"""Tools off the runtime path: data set loading, ONNX cutting, writing operating points."""
