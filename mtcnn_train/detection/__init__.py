"""Inference: the MTCNN cascade and everything that runs or ships it.

``cascade``        the cascade (P-Net pyramid, R-Net, O-Net) and its pieces
``runner``         the cascade over many images (batches, unreadable images skipped, resumable log),
                   used by ``detect``, mining's callers and every evaluation
``onnx_runtime``   exported ONNX nets run by onnxruntime inside the same cascade
``export``         writing the nets as ONNX or TorchScript
``weights_import`` the published (facenet-pytorch) weights converted to our checkpoints
``detect_files``   the ``detect`` command's work over image files, folders and videos
"""

#: Where the cascade's nets run (``Cascade.load``, ``--backend``): PyTorch from a run folder, or
#: onnxruntime on the CPU from an export folder in fp32 or with int8 nets (``export --int8``).
BACKENDS = ("torch", "onnx", "onnx-int8")
