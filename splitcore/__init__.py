"""What the sender and the receiver share, one sub-package per kind of code:

- ``wire``: the bytes between the peers: latent frames (``frame``), latent codecs
  (``codecs``) and the receiver's JSON messages (``messages``). Twins in ``static/js/wire/``.
- ``runtime``: the models at run time: manifest and ONNX Runtime runners (``models``),
  preprocessing (``preprocess``), the measured operating points (``operating``).
- ``rtc``: aiortc glue: the signaling client (``signaling``), peer connection set-up
  (``peer``), getStats-style reports (``stats``).
- ``process``: how a process runs: event loop (``loops``), CPU pinning (``cpus``), child
  processes (``children``).
- ``offline``: tools that are not on the runtime path: the CIFAR-10 loader (``datasets``),
  the ONNX cutter (``onnxcut``), the operating-point writer (``operating``).
"""
