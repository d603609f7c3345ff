"""Run under torchrun by tests/test_distributed.py: each process embeds its share
(unequal when the process count does not divide the pairs) of one fixed batch
of pairs, the PURL soft loss contrasts over the gathered batch, and DDP averages
the gradients. Process 0 computes the same batch alone and writes the largest
differences of loss and gradients (and the process count) to argv[1]."""

import sys

import numpy as np
import torch
import torch.nn as nn

from purl.data.dataset import SpeakerBatchSampler
from purl.losses import PurlLoss
from purl.training.distributed import Distributed, SpeakerNet

PAIRS, FRAMES, DIM = 10, 20, 80


class MeanLinear(nn.Module):
    """(batch, frames, 80) -> (batch, 8): no batch statistics, so that a process's
    share embeds as it would within the whole batch."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(DIM, 8)

    def forward(self, x):
        return self.proj(x.mean(1))


def setup(dist_ctx, gather, sizes=None):
    torch.manual_seed(0)
    net = SpeakerNet(MeanLinear(), PurlLoss("soft", alpha=0.5), dist_ctx, gather=gather, gather_sizes=sizes)
    generator = torch.Generator().manual_seed(1)
    feats = torch.randn(2 * PAIRS, FRAMES, DIM, generator=generator)
    labels = torch.arange(PAIRS).repeat_interleave(2)
    w = torch.rand(2 * PAIRS, 2 * PAIRS, generator=generator)
    return net, feats, labels, ((w + w.T) / 2) ** 0.3  # mostly reliable, some not


def gradients(net):
    return torch.cat([p.grad.flatten() for p in net.parameters()])


dist_ctx = Distributed()
sampler = SpeakerBatchSampler(np.arange(PAIRS).repeat(2), PAIRS, 2, 2 * PAIRS, seed=0,
                              rank=dist_ctx.rank, world_size=dist_ctx.world_size)
rows = sampler.rows_of(dist_ctx.rank)
net, feats, labels, w = setup(dist_ctx, gather=dist_ctx.world_size > 1, sizes=sampler.utts_per_rank())
model = nn.parallel.DistributedDataParallel(net) if dist_ctx.world_size > 1 else net
loss, _ = model(feats[2 * rows.start:2 * rows.stop], labels, w)
loss.backward()
if dist_ctx.main:
    alone, feats, labels, w = setup(dist_ctx, gather=False)
    reference, _ = alone(feats, labels, w)
    reference.backward()
    with open(sys.argv[1], "w") as f:
        f.write(f"{abs(loss.item() - reference.item())} {(gradients(net) - gradients(alone)).abs().max().item()} "
                f"{dist_ctx.world_size} {reference.item()}\n")
del model, net, loss  # before the group goes (see Distributed.close)
dist_ctx.close()
