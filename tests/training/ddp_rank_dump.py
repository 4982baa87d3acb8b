"""torchrun entry for test_distributed.py: the real ``mtcnn-train`` command line, with each rank's
final weights written to ``$DUMP_DIR/rank<N>.pt`` so the test can compare the ranks.

The package has no hook for this: the test injects it here, around ``trainer.train``.
"""
import os
import sys
from pathlib import Path

import torch

from mtcnn_train.cli import main
from mtcnn_train.training import trainer

_train = trainer.train


def _train_and_dump(run, *args, **kwargs):
    metrics = _train(run, *args, **kwargs)
    torch.save({"model": run.net.state_dict()}, Path(os.environ["DUMP_DIR"]) / f"rank{run.ctx.rank}.pt")
    return metrics


trainer.train = _train_and_dump

if __name__ == "__main__":
    main(sys.argv[1:])
