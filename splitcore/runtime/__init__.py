"""The models at run time: manifest, ONNX Runtime runners, preprocessing, operating points."""
