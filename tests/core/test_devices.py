"""One resolver of device settings (auto, cpu, cuda, cuda:N), and each torchrun rank's GPU."""
from __future__ import annotations

import pytest
import torch

from mtcnn_train.devices import resolve_device
from mtcnn_train.errors import UserError
from mtcnn_train.training.distributed import DistContext, rank_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert rank_device("cpu", DistContext(1, 2, 1)) == torch.device("cpu")


def test_a_bad_name_is_one_line():
    with pytest.raises(UserError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_says_so():
    for name in ("cuda", "cuda:0"):
        with pytest.raises(UserError, match=f"device '{name}' requested but CUDA is not available"):
            resolve_device(name)
        with pytest.raises(UserError, match="CUDA is not available"):
            rank_device(name, DistContext())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_each_rank_gets_its_own_gpu():
    count = torch.cuda.device_count()
    assert rank_device("cuda", DistContext(0, 1, 0)) == torch.device("cuda", 0)
    with pytest.raises(UserError, match="GPU\\(s\\) are visible"):
        resolve_device(f"cuda:{count}")
