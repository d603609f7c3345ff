"""The training loop of stages 3 and 5, split by concern:

    loop.py         Trainer: the epochs and steps, and nothing else
    callbacks.py    TrainingCallback (the events the loop emits) and TrainingState
    refit.py        the callbacks that refit with the model being trained: PURL's
                    re-estimated pair weights, CHNS's speaker clusters
    setup.py        data loader, model, loss, optimiser and DDP built from a config
    checkpoint.py   checkpoint files: what they hold, where a run starts (resumed, from
                    pretrained weights, or continued), save, average, prune, build a model
    distributed.py  Distributed (this process among torchrun's) and SpeakerNet
    schedule.py     the optimiser and the warm-up + cosine learning-rate schedule
    monitor.py      train.csv/epochs.csv rows, TensorBoard, progress lines, environment
    errors.py       TrainError

Where a run's files go (exp/<name>/...) is purl.stages.exp_layout's to say: the
loop writes to the paths of the ``outputs`` it is given.
"""
