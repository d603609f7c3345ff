"""2-D ResNet speaker encoders over the (frequency, time) plane of fbank features.

One class covers the two ResNet-34s in use:

* the "thin" ResNet-34 of the original PURL work, which is the Thin ResNet-34
  of Chung et al. 2020 ("In defence of metric learning", clovaai/voxceleb_trainer
  ResNetSE34L): channels 16-32-64-128, squeeze-excitation basic blocks
  (reduction 8), a 7x7 stem with stride 2 along frequency, stage strides
  1-2-2-1, the mean over frequency, self-attentive pooling (SAP) over time.
  With 192-dim embeddings: 1,395,798 parameters (clova's 1.44M is with its
  512-dim output layer).
* WeSpeaker's ResNet34: channels 32-64-128-256, plain basic blocks, a 3x3 stem,
  stage strides 1-2-2-2, frequency flattened into the channels, mean + standard
  deviation over time, 256-dim embeddings: 6,634,336 parameters.

Both blocks use the conv -> BN -> ReLU order of He et al.  (clova's SE block
applies ReLU before its first BN; the order changes neither parameters nor cost).
Features are expected mean-normalised already (clova's InstanceNorm on the
input is the loader's job here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

POOLINGS = ("sap", "asp", "stats")


class BasicBlock(nn.Module):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN [-> squeeze-excitation] + shortcut -> ReLU.

    (batch, in_channels, freq, frames) -> (batch, channels, freq', frames'),
    freq' = ceil(freq / stride), frames' = ceil(frames / stride).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, se_reduction: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=1, bias=False)
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
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)), inplace=True)))
        if self.se is None:
            out = out.add_(residual)
        else:
            gate = self.se(out.mean(dim=(2, 3)))
            out = torch.addcmul(residual, out, gate[:, :, None, None])
        return F.relu(out, inplace=True)


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

    Internally the features are an image (batch, 1, input_dim, frames).  Stage i
    has ``num_blocks[i]`` basic blocks of ``base_channels * 2**i`` channels, the
    first with stride ``strides[i]`` (in frequency and time).  The stem is a
    ``stem_kernel`` square conv with stride ``stem_freq_stride`` along frequency.
    After the last stage the frequency axis is averaged (``flatten_freq=False``)
    or folded into the channels (``True``) before ``pooling`` over time:
    "sap" (self-attentive), "asp" (SAP with standard deviation) or "stats"
    (mean + standard deviation).  Defaults: the thin ResNet-34 (1,395,798
    parameters); see purl.models for the wide one.

    The time axis shrinks by prod(strides); from about 20 frames on, any count works.
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
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"ResNet: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if len(num_blocks) != len(strides):
            raise ValueError(
                f"ResNet: num_blocks {list(num_blocks)} and strides {list(strides)} differ in length"
            )
        self.embed_dim = embed_dim
        self.input_dim = input_dim  # feature bins: data whose features differ is refused before a shape error
        self.stem = nn.Sequential(
            nn.Conv2d(1, base_channels, stem_kernel, (stem_freq_stride, 1), stem_kernel // 2, bias=False),
            nn.BatchNorm2d(base_channels),
            nn.ReLU(inplace=True),
        )
        blocks = []
        in_channels, freq = base_channels, (input_dim - 1) // stem_freq_stride + 1
        for i, (count, stride) in enumerate(zip(num_blocks, strides)):
            channels = base_channels * 2**i
            for j in range(count):
                blocks.append(BasicBlock(in_channels, channels, stride if j == 0 else 1, se_reduction))
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, input_dim) -> (batch, embed_dim)."""
        # channels_last is oneDNN's native layout: without it every conv
        # (forward and backward) reorders its input and output.
        x = x.transpose(1, 2).unsqueeze(1).contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.stem(x))  # (batch, channels, freq', frames')
        x = x.flatten(1, 2) if self.flatten_freq else x.mean(dim=2)
        return self.fc(self.pool(x))
