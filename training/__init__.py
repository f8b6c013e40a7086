"""Training, export, calibration and quantization of SplitNet (PyTorch; not needed at run time)."""
