"""Privacy measured (issue 15): how well a latent that leaves the device turns back into the frame.

Two attacks, both on latents that went through the exact head (ONNX Runtime, float32 or INT8)
and the exact wire codec (encode, frame, reassemble, decode: what a receiver holds):

- ``inverse``: black-box inverse network (He et al., ACSAC 2019, section 4): a decoder trained
  on latents of CIFAR-10 *training* images, one per split x quantizer x head;
- ``whitebox``: regularised maximum likelihood (rML, same paper, section 3): knowing the head,
  optimise an input whose latent matches the observed one, with a total-variation prior.

``metrics`` has PSNR and SSIM (scikit-image), ``baselines`` the raw/JPEG/WebP frames a plain
"send the picture" design would transmit, ``study`` the driver (``python -m training.privacy``)
and ``report`` its JSON, Markdown and figures. PyTorch is a training-only dependency
(requirements-train.txt); the runtime never imports this package.
"""
