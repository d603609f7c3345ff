"""This process's place among the torchrun processes (DDP: NCCL on GPU, gloo on
CPU, or a plain process alone), and the module that DDP keeps in step."""

from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist
import torch.nn as nn


class Distributed:
    """This process's place among the torchrun processes (or alone)."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_gather(self, tensor: torch.Tensor, *, sizes: list[int] | None = None,
                   with_grad: bool = False) -> torch.Tensor:
        """The rows of every process's ``tensor``, concatenated in rank order.

        ``sizes`` (rows per process, in rank order) allows unequal shares: the
        collectives need equal shapes, so each share is padded to the largest
        and the padding dropped after the gather.
        """
        if self.world_size == 1:
            return tensor
        sizes = sizes or [len(tensor)] * self.world_size
        if len(sizes) != self.world_size or sizes[self.rank] != len(tensor):
            raise ValueError(f"all_gather: process {self.rank} has {len(tensor)} rows, but the shares are {sizes}")
        longest = max(sizes)
        if len(tensor) < longest:
            tensor = torch.cat([tensor, tensor.new_zeros((longest - len(tensor),) + tensor.shape[1:])])
        if with_grad:
            # The autograd-aware gather sends each process's gradient back to its owner.
            parts = torch.distributed.nn.functional.all_gather(tensor)
        else:
            parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(parts, tensor)
        return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])

    def any_process(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process (a collective: every process calls it)."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            # Gloo aborts a process ("terminate called without an active
            # exception", SIGABRT) when tensors that its collectives still
            # reference (a DDP reducer's, an autograd graph's) die after the
            # group, at interpreter exit. So: collect them now, and let every
            # process get here before any tears the group down. On a failure
            # torchrun ends the other processes, so none waits for ever.
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()


class SpeakerNet(nn.Module):
    """Encoder and loss in one module, so that DDP keeps both (the loss has the
    learnable temperature) in step across processes."""

    def __init__(self, encoder: nn.Module, loss: nn.Module, dist_ctx: Distributed, gather: bool,
                 gather_sizes: list[int] | None = None):
        super().__init__()
        self.encoder, self.loss = encoder, loss
        self.dist_ctx, self.gather, self.gather_sizes = dist_ctx, gather, gather_sizes

    def forward(self, feats, labels, pair_weights=None, groups=None):
        embeddings = self.encoder(feats)
        if self.gather:
            # Every process computes the loss of the whole batch; the gradient
            # reaching each process's embeddings is then that of the global loss.
            embeddings = self.dist_ctx.all_gather(embeddings, sizes=self.gather_sizes, with_grad=True)
        return self.loss(embeddings.float(), labels, pair_weights, groups)
