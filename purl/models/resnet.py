"""2-D ResNet speaker encoders over the time-frequency plane of fbank features.

One class covers the two ResNet-34s in use:

* the "thin" ResNet-34 of the original PURL work, which is the Thin ResNet-34
  of Chung et al. 2020 ("In defence of metric learning", clovaai/voxceleb_trainer
  ResNetSE34L): channels 16-32-64-128, squeeze-excitation basic blocks
  (reduction 8), a 7x7 stem with stride 2 along one axis, stage strides
  1-2-2-1, the mean over that axis, self-attentive pooling (SAP) over the
  other (which axis is which: ``layout`` below).  With 192-dim embeddings: 1,395,798 parameters (clova's 1.44M is with its
  512-dim output layer).
* WeSpeaker's ResNet34: channels 32-64-128-256, plain basic blocks, a 3x3 stem,
  stage strides 1-2-2-2, frequency flattened into the channels, mean + standard
  deviation over time, 256-dim embeddings: 6,634,336 parameters.

Two layouts of the same parameters (``layout``):

* "original": the thin ResNet-34 exactly as the original PURL work runs clova's
  ResNetSE (its ``src/models.py`` feeds (batch, 1, time, freq)): the stem's
  stride and the final mean run over time, SAP attends over the 20 frequency
  positions left after the strides; blocks conv -> ReLU -> BN (clova's order);
  convolutions Kaiming-normal (fan-out) initialised.
* "clova": the image is (batch, 1, freq, time), as clova's own code sees its
  mel spectrogram: the stem strides frequency, the mean runs over frequency and
  SAP over time; blocks in He et al.'s conv -> BN -> ReLU order, PyTorch's
  default initialisation.  The class default, so that checkpoints made before
  the "original" layout existed still load as what they were trained as.

Features are expected mean-normalised already (clova's InstanceNorm on the
input is the loader's job here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

POOLINGS = ("sap", "asp", "stats")
LAYOUTS = ("original", "clova")


class BasicBlock(nn.Module):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN [-> squeeze-excitation] + shortcut -> ReLU.

    With ``relu_before_bn`` the first part is 3x3 conv -> ReLU -> BN (clova's order).
    (batch, in_channels, height, width) -> (batch, channels, height', width'),
    height' = ceil(height / stride), width' = ceil(width / stride).
    """

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, se_reduction: int = 0, relu_before_bn: bool = False,
        conv: type[nn.Conv2d] = nn.Conv2d,
    ):
        super().__init__()
        self.relu_before_bn = relu_before_bn
        self.conv1 = conv(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv(channels, channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = None
        if se_reduction:
            self.se = nn.Sequential(
                nn.Linear(channels, channels // se_reduction),
                nn.ReLU(inplace=True),
                nn.Linear(channels // se_reduction, channels),
                nn.Sigmoid(),
            )
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        out = self.conv1(x)
        if self.relu_before_bn:
            out = self.bn1(F.relu(out, inplace=True))
        else:
            out = F.relu(self.bn1(out), inplace=True)
        out = self.bn2(self.conv2(out))
        if self.se is None:
            out = out.add_(residual)
        else:
            gate = self.se(out.mean(dim=(2, 3)))
            out = torch.addcmul(residual, out, gate[:, :, None, None])
        return F.relu(out, inplace=True)


class TransposedConv2d(nn.Conv2d):
    """A Conv2d whose parameters (and state_dict) are those of a convolution over
    the transposed image, run on the image as given: conv(x^T, w)^T = conv(x, w^T)
    with stride, padding and dilation swapped.  The "original" layout's image is
    (time, freq) but oneDNN runs the same convolutions about 10% faster in
    training and 20% faster embedding on the (freq, time) image (bench_models,
    2 CPU threads): the function is the same, to float rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.transpose(2, 3), self.bias, self.stride[::-1], self.padding[::-1],
                        self.dilation[::-1], self.groups)


class SelfAttentivePooling(nn.Module):
    """SAP (Cai et al. 2018): w_t = softmax_t(v . tanh(W x_t + b)), e = sum_t w_t x_t.

    (batch, dim, frames) -> (batch, dim); with ``with_std`` (ASP) also the
    attention-weighted standard deviation: (batch, 2 * dim).
    """

    def __init__(self, dim: int, with_std: bool = False):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.attention = nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, 1)))
        self.with_std = with_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.transpose(1, 2)  # (batch, frames, dim), a view for the linear layer
        weights = torch.softmax(torch.tanh(self.linear(frames)) @ self.attention, dim=1)  # (batch, frames, 1)
        mean = torch.bmm(x, weights).squeeze(2)
        if not self.with_std:
            return mean
        # clova's ASP: E_w[x^2] - mean^2, clamped as there.
        var = torch.bmm(x.square(), weights).squeeze(2) - mean.square()
        return torch.cat([mean, var.clamp(min=1e-5).sqrt()], dim=1)


class StatsPooling(nn.Module):
    """Mean and standard deviation over time (WeSpeaker's TSTP: unbiased variance + 1e-7).

    (batch, dim, frames) -> (batch, 2 * dim).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=2, correction=1)
        return torch.cat([mean, (var + 1e-7).sqrt()], dim=1)


class ResNet(nn.Module):
    """ResNet speaker encoder: (batch, frames, input_dim) fbank -> (batch, embed_dim).

    The features are an image whose axes are, as the parameters see them,
    (input_dim, frames) in the "clova" ``layout`` and (frames, input_dim) in the
    "original" one (see the module docstring; the original's is computed
    transposed, see TransposedConv2d).  Stage i has ``num_blocks[i]`` basic blocks of
    ``base_channels * 2**i`` channels, the first with stride ``strides[i]`` (in
    both axes).  The stem is a ``stem_kernel`` square conv with stride
    ``stem_freq_stride`` along the image's first axis: frequency in the "clova"
    layout, time in the "original" one.  After the last stage that first axis
    is averaged (or, "clova" only, frequency is folded into the channels with
    ``flatten_freq=True``) and ``pooling`` runs over the other: time in "clova",
    frequency in "original".  Poolings: "sap" (self-attentive), "asp" (SAP with
    standard deviation) or "stats" (mean + standard deviation).  Defaults: the
    thin ResNet-34 (1,395,798 parameters); see purl.models for the wide one.

    The time axis shrinks by prod(strides) (times the stem stride in the
    "original" layout); from about 20 frames on, any count works.
    """

    def __init__(
        self,
        input_dim: int = 80,
        num_blocks: Sequence[int] = (3, 4, 6, 3),
        base_channels: int = 16,
        strides: Sequence[int] = (1, 2, 2, 1),
        stem_kernel: int = 7,
        stem_freq_stride: int = 2,
        se_reduction: int = 8,
        flatten_freq: bool = False,
        pooling: str = "sap",
        embed_dim: int = 192,
        layout: str = "clova",
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"ResNet: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"ResNet: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if layout == "original" and flatten_freq:
            raise ValueError(
                "ResNet: flatten_freq needs layout 'clova' (in the 'original' layout the axis it would fold "
                "into the channels is time, whose length varies)"
            )
        if len(num_blocks) != len(strides):
            raise ValueError(
                f"ResNet: num_blocks {list(num_blocks)} and strides {list(strides)} differ in length"
            )
        self.embed_dim = embed_dim
        self.time_first = layout == "original"
        self.input_dim = input_dim  # feature bins: data whose features differ is refused before a shape error
        # Both layouts compute on the (freq, time) image; the "original" one with
        # its (time, freq) parameters transposed on the fly (TransposedConv2d).
        conv = TransposedConv2d if self.time_first else nn.Conv2d
        self.stem = nn.Sequential(
            conv(1, base_channels, stem_kernel, (stem_freq_stride, 1), stem_kernel // 2, bias=False),
            nn.BatchNorm2d(base_channels),
            nn.ReLU(inplace=True),
        )
        blocks = []
        in_channels = base_channels
        freq = input_dim if self.time_first else (input_dim - 1) // stem_freq_stride + 1
        for i, (count, stride) in enumerate(zip(num_blocks, strides)):
            channels = base_channels * 2**i
            for j in range(count):
                blocks.append(
                    BasicBlock(in_channels, channels, stride if j == 0 else 1, se_reduction, relu_before_bn=self.time_first,
                               conv=conv)
                )
                in_channels = channels
            freq = (freq - 1) // stride + 1
        self.blocks = nn.Sequential(*blocks)
        self.flatten_freq = flatten_freq
        frame_dim = in_channels * freq if flatten_freq else in_channels
        if pooling == "stats":
            self.pool = StatsPooling()
        else:
            self.pool = SelfAttentivePooling(frame_dim, with_std=pooling == "asp")
        self.fc = nn.Linear(frame_dim if pooling == "sap" else 2 * frame_dim, embed_dim)
        if self.time_first:
            # The original's (clova's) initialisation; BN is already weight 1, bias 0.
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, input_dim) -> (batch, embed_dim)."""
        # channels_last is oneDNN's native layout: without it every conv
        # (forward and backward) reorders its input and output.
        x = x.transpose(1, 2).unsqueeze(1).contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.stem(x))  # (batch, channels, freq', time')
        if self.flatten_freq:
            x = x.flatten(1, 2)
        else:
            x = x.mean(dim=3 if self.time_first else 2)  # over time in "original", frequency in "clova"
        return self.fc(self.pool(x))
