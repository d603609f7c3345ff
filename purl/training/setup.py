"""The parts of a run built from its config, in the order the seeded random
draws need (model weights first, then the sampler's own generator): changing
the order changes the weights of every run."""

from __future__ import annotations

import logging
import os

import torch

from purl.config import ConfigError
from purl.data.augment import Augmenter, WaveChunkDataset
from purl.data.chns import chns_sampler_or_plain
from purl.data.dataset import ChunkDataset, TrainingSet, collate
from purl.evaluate import check_feature_dim
from purl.losses import LOSS_TYPES, build_loss
from purl.models import ModelArgumentError, build_model
from purl.training.distributed import Distributed, SpeakerNet
from purl.training.errors import TrainError

log = logging.getLogger(__name__)


def build_net(config: dict, data: TrainingSet, data_dir: str | os.PathLike, dist: Distributed,
              has_pair_weights: bool) -> SpeakerNet:
    """The encoder and loss of ``config`` on this process's device, checked
    against the data's feature dimension."""
    model = config["model"]
    try:
        encoder = build_model(model["name"], **model["args"])
    except ModelArgumentError as e:
        raise ConfigError(f"model.{e.key}: {e}") from e
    check_feature_dim(encoder, data_dir, data.utts[0], data.feats[0])
    if config["loss"]["type"] not in LOSS_TYPES:
        raise ConfigError(f"loss.type={config['loss']['type']!r} is not a loss; choose one of {', '.join(LOSS_TYPES)}")
    loss_cfg = dict(config["loss"])
    loss = build_loss(loss_cfg.pop("type"), **loss_cfg)
    if loss.needs_pair_weights and not has_pair_weights:
        raise TrainError(f"loss.type={config['loss']['type']} needs pair weights: "
                         "set purl.reliability to stage 4's output")
    net = SpeakerNet(encoder, loss, dist, gather=config["train"]["gather_batch"] and dist.world_size > 1)
    net.to(dist.device)
    return net


def build_loader(config: dict, data: TrainingSet, data_dir: str | os.PathLike, dist: Distributed, sampler):
    """The DataLoader of the batches ``sampler`` draws: cached feature chunks,
    or chunks computed from augmented audio when augment.prob > 0."""
    d = config["data"]
    longest = int(data.num_frames.max())
    if d["chunk_frames"] > longest and dist.main:
        log.warning(f"data.chunk_frames={d['chunk_frames']} is longer than every training utterance (the longest "
                    f"has {longest} frames): every chunk will be its utterance tiled (repeated) to length; set "
                    f"data.chunk_frames to {longest} or fewer for chunks of unrepeated speech")
    dataset = ChunkDataset(data, d["chunk_frames"], d["spec_augment"], d["freq_mask"], d["time_mask"],
                           normalise=d["normalise"])
    if config["augment"]["prob"] > 0:
        if data.feature_type != "kaldi":
            raise ConfigError(f"augment.prob={config['augment']['prob']} computes Kaldi fbank of each augmented "
                              f"chunk, but the features of {data_dir} are {data.feature_type}: set augment.prob=0, "
                              "or compute Kaldi features (steps/make_fbank.sh --feature-type kaldi)")
        dataset = WaveChunkDataset.from_data_dir(
            data, data_dir, Augmenter.from_config(config["augment"]), chunk_frames=d["chunk_frames"],
            spec_augment=d["spec_augment"], freq_mask=d["freq_mask"], time_mask=d["time_mask"])
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=d["num_workers"],
        pin_memory=dist.device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if d["num_workers"] > 0 else None,
    )


def build_sampler(config: dict, data: TrainingSet, dist: Distributed):
    """This process's share of the speaker batches (CHNS when chns.hard_ratio > 0)."""
    d = config["data"]
    return chns_sampler_or_plain(
        config["chns"], data.labels, d["speakers_per_batch"], d["utts_per_speaker"], d["samples_per_epoch"],
        seed=config["train"]["seed"], rank=dist.rank, world_size=dist.world_size, sampler=d["sampler"],
    )
