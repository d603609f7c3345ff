"""Run under torchrun by tests/test_trainer.py: trains a few steps in each process,
then compares the processes' weights. Writes the largest difference to argv[4]."""

import sys

import torch
import torch.distributed as dist

from purl.config import load_config
from purl.stages.exp_layout import TrainingOutputs
from purl.training.loop import Trainer

config_path, data_dir, exp_dir, out = sys.argv[1:5]
trainer = Trainer(load_config(config_path), data_dir, TrainingOutputs(exp_dir), show_progress=False)
trainer.train(stop_at_step=3)
vector = torch.cat([p.detach().flatten() for p in trainer.net.parameters()])
gathered = [torch.empty_like(vector) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, vector)
if dist.get_rank() == 0:
    with open(out, "w") as f:
        f.write(f"{max((g - gathered[0]).abs().max().item() for g in gathered)} {len(gathered)}\n")
trainer.close()
