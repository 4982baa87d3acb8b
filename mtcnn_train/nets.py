"""P-Net, R-Net and O-Net with the original MTCNN architectures.

Layer names and parameter shapes follow the original Caffe models (as shipped, converted, in
facenet-pytorch), so the published weights import with
:func:`mtcnn_train.detection.weights_import.convert_facenet_state_dict`.
Differences from the published models, each on purpose:

* every net has a 10-value landmark head (the paper trains landmarks at all three stages; the
  published P-Net and R-Net lack it, so an import leaves those heads at their initial values);
* fully connected layers flatten in PyTorch's natural ``(C, H, W)`` order, and landmarks are
  interleaved ``x1, y1, x2, y2, ...``; the importer permutes the published weights to match.

Every net takes images normalised as ``(x - 127.5) / 128`` (see :func:`normalize`) and returns raw
face logits ``(N, 2)``, box offsets ``(N, 4)`` and landmark offsets ``(N, 10)``; P-Net returns maps
``(N, 2|4|10, H', W')`` because it runs fully convolutionally on whole images.  The cascade's
faster paths (:meth:`PNet.face_and_box_from_pixels`, :meth:`RNet.face_and_box`) live beside each
forward, so a net's layer names are read in its own class only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtcnn_train.stages import check_stage


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """``(x - 127.5) / 128`` as in the paper; takes uint8 (or float 0..255) NCHW tensors."""
    return (images_uint8.float() - 127.5) * 0.0078125


#: Channel counts of the cascade's CPU paths are padded to multiples of this (16 floats: one AVX-512
#: register), so channels-last element-wise ops and pooling vectorise.
CHANNEL_LANES = 16


def padded_channels(channels: int) -> int:
    """``channels`` rounded up to a multiple of :data:`CHANNEL_LANES`."""
    return -(-channels // CHANNEL_LANES) * CHANNEL_LANES


def _pad_dim(tensor: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``tensor`` zero-padded along ``dim`` to ``size``: extra output channels of a convolution
    (weight, bias, PReLU slope zero) stay exactly zero, and zero input weights ignore them."""
    extra = size - tensor.shape[dim]
    if extra == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = extra
    return torch.cat([tensor, tensor.new_zeros(shape)], dim)


#: Maps at least this many rows and columns are max-pooled by :func:`max_pool` in slices on the CPU.
SLICED_POOL_MIN_SIDE = 12


def _pool_along(x: torch.Tensor, dim: int, kernel: int, stride: int) -> torch.Tensor:
    """Max pooling along one dimension with ceil mode and no padding, as strided slices: the
    maximum of the ``kernel`` slices that start at ``0 .. kernel - 1``; a last window that sticks
    out of the map (ceil mode) takes only the slices that reach it."""
    size = x.shape[dim]
    count = -(-(size - kernel) // stride) + 1
    if (count - 1) * stride >= size:  # a window may not start outside the map
        count -= 1
    windows = [x.narrow(dim, k, size - k)[(slice(None),) * dim + (slice(None, None, stride),)] for k in range(kernel)]
    full = [w.narrow(dim, 0, count) for w in windows if w.shape[dim] >= count]  # slices shrink with k
    out = torch.maximum(full[0], full[1]) if len(full) > 1 else full[0].clone()
    for part in full[2:] + windows[len(full):]:  # the later ones miss the last window (ceil mode)
        head = out.narrow(dim, 0, part.shape[dim])
        torch.maximum(head, part, out=head)
    return out


def max_pool(pool: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)``, the same values; at inference on the CPU, for maps of at least
    :data:`SLICED_POOL_MIN_SIDE` a side, as two passes of strided maxima (rows, then columns).
    PyTorch's CPU max pooling always computes the indices too and does not vectorise over the
    channels of a channels-last map: the sliced form is 2-3x faster there (measured on P-Net's
    first maps and on R-Net's and O-Net's first two) and slower on the small maps after them."""
    kernel, stride = pool.kernel_size, pool.stride
    if (x.device.type != "cpu" or torch.is_grad_enabled() or not pool.ceil_mode or pool.padding != 0
            or pool.dilation != 1 or not isinstance(kernel, int) or not isinstance(stride, int)
            or min(x.shape[-2:]) < SLICED_POOL_MIN_SIDE):
        return pool(x)
    return _pool_along(_pool_along(x, x.dim() - 2, kernel, stride), x.dim() - 1, kernel, stride)


class PNet(nn.Module):
    """Proposal network: 12x12 input, fully convolutional."""

    input_size = 12

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)
        self.conv4_3 = nn.Conv2d(32, 10, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_1(x), self.conv4_2(x), self.conv4_3(x)

    def pixel_weights(self, lanes: bool) -> tuple[torch.Tensor, ...]:
        """The weights of :meth:`face_and_box_from_pixels`: the input normalisation folded into
        ``conv1`` (``w / 128`` and ``b - 127.5 / 128 * sum(w)``, the same function up to float
        rounding), the face and box heads as one 1x1 convolution, and with ``lanes`` ``conv1``'s
        10 channels padded to 16 (:func:`padded_channels`).  The cascade computes them once per
        pyramid level, not per strip."""
        weight = self.conv1.weight * 0.0078125
        bias = self.conv1.bias - self.conv1.weight.sum((1, 2, 3)) * (127.5 * 0.0078125)
        width = padded_channels(weight.shape[0]) if lanes else weight.shape[0]
        return (_pad_dim(weight, 0, width), _pad_dim(bias, 0, width), _pad_dim(self.prelu1.weight, 0, width),
                _pad_dim(self.conv2.weight, 1, width), torch.cat([self.conv4_1.weight, self.conv4_2.weight]),
                torch.cat([self.conv4_1.bias, self.conv4_2.bias]))

    def lanes_pay(self, pixels: torch.Tensor) -> bool:
        """Whether :meth:`face_and_box_from_pixels` pads ``conv1``'s channels on this input: on the
        CPU, when ``conv2`` runs in oneDNN padded or not.  PyTorch picks oneDNN for a single image
        only above 20,480 input values, so on small levels padding would switch ``conv2``'s
        kernel and its float rounding; above, the padded path gives the same bits."""
        height, width = pixels.shape[-2:]
        pooled = -(-(height - 2) // 2) * -(-(width - 2) // 2)
        return pixels.device.type == "cpu" and (pixels.shape[0] > 1 or self.conv2.in_channels * pooled > 20480)

    def face_and_box_from_pixels(self, pixels: torch.Tensor, weights: tuple[torch.Tensor, ...] | None = None,
                                 fill_lines=()) -> tuple[torch.Tensor, torch.Tensor]:
        """Face logits and box offsets on raw 0..255 pixels (a pyramid level): the cascade's path.

        With :meth:`pixel_weights` (``weights``, else computed here): normalisation folded into
        ``conv1``, the two heads as one convolution, the landmark head skipped; each saves a pass
        over the largest maps.  On the CPU the maps are channels-last and, where
        :meth:`lanes_pay`, ``conv1``'s channels padded to 16: PReLU and max pooling over 10
        interleaved channels do not vectorise and took longer than the convolutions.
        ``fill_lines``: rectangles ``(row0, row1, col0, col1)`` of ``conv1``'s map set to ``-inf``
        before the pooling (a packed pyramid's level edges, :mod:`mtcnn_train.detection.packing`).
        """
        if weights is None:
            weights = self.pixel_weights(lanes=self.lanes_pay(pixels))
        conv1_w, conv1_b, prelu1_w, conv2_w, heads_w, heads_b = weights
        if pixels.device.type == "cpu":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        x = F.prelu(F.conv2d(pixels, conv1_w, conv1_b), prelu1_w)
        for row0, row1, col0, col1 in fill_lines:
            x[:, :, row0:row1, col0:col1] = float("-inf")
        x = max_pool(self.pool1, x)
        x = self.prelu3(self.conv3(self.prelu2(F.conv2d(x, conv2_w, self.conv2.bias))))
        # A 1x1 kernel's dilation changes nothing but PyTorch's choice of kernel: one thread, one
        # image and a 1x1 kernel otherwise take its slow im2col path (2.2x slower here); with a
        # dilation, oneDNN runs, as it does anyway with two threads.
        heads = F.conv2d(x, heads_w, heads_b, dilation=2 if x.device.type == "cpu" else 1)
        return heads[:, :2], heads[:, 2:6]


class RNet(nn.Module):
    """Refinement network: 24x24 input."""

    input_size = 24

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        # Training only (identity in eval mode, no parameters, so checkpoints and imports are
        # unchanged): with a few hundred training images the later nets learn their mined faces
        # by heart; dropout on the fully connected layer is the usual remedy.
        self.dropout = nn.Dropout(dropout)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)
        self.dense5_3 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dropout(self.dense4(x.flatten(1))))
        return self.dense5_1(x), self.dense5_2(x), self.dense5_3(x)

    def face_and_box(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Face logits and box offsets only: what the cascade reads, skipping the landmark head
        (the published R-Net has none).  (Padding ``conv1``'s 28 channels to 32, as P-Net's, made
        R-Net 2.2x slower on the CPU: measured, dropped.)"""
        x = max_pool(self.pool1, self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(self.prelu3(self.conv3(x)).flatten(1)))
        return self.dense5_1(x), self.dense5_2(x)


class ONet(nn.Module):
    """Output network: 48x48 input, the final boxes and landmarks."""

    input_size = 48

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.dropout = nn.Dropout(dropout)  # training only, as R-Net's
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        return self._head(x)

    def _head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dropout(self.dense5(x.flatten(1))))
        return self.dense6_1(x), self.dense6_2(x), self.dense6_3(x)

    def infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` as the cascade runs it: the first two poolings by :func:`max_pool`
        (the same values, faster on the CPU); ``forward`` stays plain for export and training."""
        x = max_pool(self.pool1, self.prelu1(self.conv1(x)))
        x = max_pool(self.pool2, self.prelu2(self.conv2(x)))
        return self._head(x)


NETS: dict[str, type[nn.Module]] = {"pnet": PNet, "rnet": RNet, "onet": ONet}


def build_net(stage: str, dropout: float = 0.0) -> nn.Module:
    """A fresh net of ``stage``; ``dropout`` (R-Net and O-Net only) acts in training mode only."""
    net_class = NETS[check_stage(stage)]
    if net_class is PNet:
        if dropout:
            raise ValueError("P-Net has no fully connected layer to drop out")
        return PNet()
    return net_class(dropout)
