"""ECAPA-TDNN speaker encoder (Desplanques et al., Interspeech 2020).

The layers, their order and their parameters are those of SpeechBrain's
``speechbrain.lobes.models.ECAPA_TDNN`` (which the original PURL work used):
every convolution has a bias, "same" padding is reflect padding, each TDNN
block is Conv1d -> ReLU -> BatchNorm, and the pooling standard deviation is
clamped at 1e-12 before the square root.  A checkpoint's parameter count
therefore matches SpeechBrain's: 2,049,952 at C=256, 6,194,048 at C=512 and
20,767,552 at C=1024 (with 192-dim embeddings).

What differs is only how the same function is evaluated, for speed:

* the attentive pooling's global context [x; mean; std] is not materialised:
  the 1x1 convolution over it splits into W_x x + W_context [mean; std], whose
  second term is one vector per utterance (a third of the FLOPs, and no
  (batch, 3C, frames) tensor: oneDNN's backward pass for that wide 1x1
  convolution was the slowest op of SpeechBrain's version on CPU);
* kernel-1 convolutions skip SpeechBrain's zero-width reflect padding (a copy)
  and run as a batched matmul, the bias added in place (on CPU faster than
  oneDNN's 1x1 convolution and than baddbmm);
* the pooling statistics are einsum dot products (twice as fast on CPU as a
  product and a sum; torch.var_mean is slower still); squeeze-excitation's
  gate and the residual sum are one ``addcmul``.

On the 2-core development machine (2 threads, 32 x 300 frames, idle, the
same allocator settings) this trains about 1.07x and embeds about 1.3x as fast
as a line-by-line transcription of SpeechBrain's module (docs/speed.md).

Equal up to float rounding; tests/test_models.py checks it against a plain
transcription of SpeechBrain's forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# SpeechBrain's clamp on the pooled variance before the square root.
_STD_EPS = 1e-12


def pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-1 ``conv`` applied as a batched matmul.

    (batch, in_channels, frames) -> (batch, out_channels, frames).
    """
    y = torch.bmm(conv.weight.squeeze(2).expand(x.shape[0], -1, -1), x)
    # In place: bmm's backward does not need its output.  (baddbmm with the
    # broadcast bias is slower on CPU: it first copies the bias into the output.)
    return y if conv.bias is None else y.add_(conv.bias.unsqueeze(1))


def weighted_var(x: torch.Tensor, mean: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """sum_t w_t (x_t - mean)^2 per channel (w = 1/frames when ``weights`` is None).

    (batch, channels, frames), (batch, channels) -> (batch, channels).  The two
    pass form, as SpeechBrain's; einsum's batched dot products are about twice
    as fast on CPU as a product and a sum, and torch.var_mean several times slower.
    """
    centred = x - mean.unsqueeze(2)
    if weights is None:
        return torch.einsum("bct,bct->bc", centred, centred) / x.shape[2]
    return torch.einsum("bct,bct->bc", weights * centred, centred)


class TdnnBlock(nn.Module):
    """Conv1d (reflect "same" padding) -> ReLU -> BatchNorm1d.

    (batch, in_channels, frames) -> (batch, out_channels, frames).
    A kernel of size k with dilation d needs frames > d * (k - 1) / 2.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2,
            padding_mode="reflect",
        )
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pointwise(self.conv, x) if self.conv.kernel_size[0] == 1 else self.conv(x)
        return self.norm(F.relu(x, inplace=True))


class Res2NetBlock(nn.Module):
    """Res2Net with dilation: split channels into ``scale`` groups; group i > 0
    goes through its own TdnnBlock after adding the previous group's output.

    (batch, channels, frames) -> (batch, channels, frames).
    """

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        if channels % scale:
            raise ValueError(
                f"Res2NetBlock: channels ({channels}) must be divisible by res2net_scale ({scale})"
            )
        self.width = channels // scale
        self.blocks = nn.ModuleList(
            TdnnBlock(self.width, self.width, kernel_size, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, *rest = torch.split(x, self.width, dim=1)  # views, no copies
        outputs = [first]
        y = None
        for block, x_i in zip(self.blocks, rest):
            y = block(x_i if y is None else x_i + y)
            outputs.append(y)
        return torch.cat(outputs, dim=1)


class SeRes2NetBlock(nn.Module):
    """TDNN(k=1) -> Res2Net -> TDNN(k=1) -> squeeze-excitation, plus a residual
    (through a 1x1 convolution when the channel count changes).

    (batch, in_channels, frames) -> (batch, out_channels, frames).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        res2net_scale: int,
        se_channels: int,
        kernel_size: int,
        dilation: int,
    ):
        super().__init__()
        self.tdnn1 = TdnnBlock(in_channels, out_channels)
        self.res2net = Res2NetBlock(out_channels, res2net_scale, kernel_size, dilation)
        self.tdnn2 = TdnnBlock(out_channels, out_channels)
        # Squeeze-excitation acts on one vector per utterance: plain linear layers.
        self.se_squeeze = nn.Linear(out_channels, se_channels)
        self.se_excite = nn.Linear(se_channels, out_channels)
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else pointwise(self.shortcut, x)
        x = self.tdnn2(self.res2net(self.tdnn1(x)))
        gate = torch.sigmoid(self.se_excite(F.relu(self.se_squeeze(x.mean(dim=2)))))
        return torch.addcmul(residual, x, gate.unsqueeze(2))


class AttentiveStatsPooling(nn.Module):
    """Channel-wise attentive statistics pooling, optionally with global context.

    (batch, channels, frames) -> (batch, 2 * channels): the attention-weighted
    mean and standard deviation of each channel over time.  With global context
    the attention also sees each channel's plain mean and standard deviation.
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        # One conv over [x; mean; std] as in SpeechBrain, so the weights (and a
        # checkpoint's layout) are the same; forward() uses it in three slices.
        self.tdnn = TdnnBlock(3 * channels if global_context else channels, attention_channels)
        self.conv = nn.Conv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if self.global_context:
            mean = x.mean(dim=2)
            std = weighted_var(x, mean, None).clamp(min=_STD_EPS).sqrt()
            conv = self.tdnn.conv
            weight = conv.weight.squeeze(2)
            w_x, w_context = weight[:, :channels], weight[:, channels:]
            # W [x; mean; std] + b == W_x x + (W_context [mean; std] + b): one vector per utterance
            context = F.linear(torch.cat([mean, std], dim=1), w_context, conv.bias)
            hidden = torch.bmm(w_x.expand(x.shape[0], -1, -1), x).add_(context.unsqueeze(2))
            hidden = self.tdnn.norm(F.relu(hidden, inplace=True))
        else:
            hidden = self.tdnn(x)
        attn = torch.softmax(pointwise(self.conv, torch.tanh(hidden)), dim=2)
        mean = torch.einsum("bct,bct->bc", attn, x)
        var = weighted_var(x, mean, attn)
        return torch.cat([mean, var.clamp(min=_STD_EPS).sqrt()], dim=1)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN: (batch, frames, input_dim) fbank -> (batch, embed_dim).

    ``channels[0]`` is the first TDNN layer, ``channels[1:-1]`` the SE-Res2Net
    blocks, ``channels[-1]`` the multi-layer feature aggregation (which takes
    the concatenated outputs of the SE-Res2Net blocks); ``kernel_sizes`` and
    ``dilations`` go with them.  Common sizes:

    =====  ======================  ===========
    C      channels                parameters
    =====  ======================  ===========
    256    [256]*4 + [768]         2,049,952
    512    [512]*4 + [1536]        6,194,048
    1024   [1024]*4 + [3072]       20,767,552
    =====  ======================  ===========

    Frames: any count above the widest reflect padding (4 with the default
    dilations); the embedding is independent of the batch in eval mode.
    """

    def __init__(
        self,
        input_dim: int = 80,
        channels: Sequence[int] = (256, 256, 256, 256, 768),
        kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        dilations: Sequence[int] = (1, 2, 3, 4, 1),
        attention_channels: int = 128,
        res2net_scale: int = 8,
        se_channels: int = 128,
        global_context: bool = True,
        embed_dim: int = 192,
    ):
        super().__init__()
        if not len(channels) == len(kernel_sizes) == len(dilations) >= 3:
            raise ValueError(
                f"EcapaTdnn: channels, kernel_sizes and dilations need the same length (at least 3), "
                f"got {len(channels)}, {len(kernel_sizes)}, {len(dilations)}"
            )
        self.embed_dim = embed_dim
        self.input_dim = input_dim  # feature bins: data whose features differ is refused before a shape error
        self.blocks = nn.ModuleList([TdnnBlock(input_dim, channels[0], kernel_sizes[0], dilations[0])])
        for i in range(1, len(channels) - 1):
            self.blocks.append(
                SeRes2NetBlock(
                    channels[i - 1], channels[i], res2net_scale, se_channels, kernel_sizes[i], dilations[i]
                )
            )
        self.mfa = TdnnBlock(sum(channels[1:-1]), channels[-1], kernel_sizes[-1], dilations[-1])
        self.asp = AttentiveStatsPooling(channels[-1], attention_channels, global_context)
        self.asp_bn = nn.BatchNorm1d(2 * channels[-1])
        self.fc = nn.Linear(2 * channels[-1], embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, input_dim) -> (batch, embed_dim)."""
        x = self.blocks[0](x.transpose(1, 2))  # the conv's padding makes it contiguous
        outputs = []
        for block in self.blocks[1:]:
            x = block(x)
            outputs.append(x)
        x = self.mfa(torch.cat(outputs, dim=1))
        return self.fc(self.asp_bn(self.asp(x)))
