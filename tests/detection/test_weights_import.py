"""Importing facenet-pytorch's weights: their forward, re-implemented here from a state dict with
plain torch ops, must match our nets after conversion."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mtcnn_train.detection import weights_import as wi
from mtcnn_train.checkpoint import load_checkpoint, load_stage_net
from mtcnn_train.errors import UserError
from mtcnn_train.nets import build_net


def their_forward(stage: str, sd: dict[str, torch.Tensor], x: torch.Tensor):
    """facenet-pytorch's PNet/RNet/ONet forward (models/mtcnn.py), written out: returns face
    probabilities, box offsets and (O-Net) landmarks as 5 x then 5 y."""
    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"])

    def prelu(name, t):
        return F.prelu(t, sd[f"{name}.weight"])

    def dense(name, t):
        return F.linear(t, sd[f"{name}.weight"], sd[f"{name}.bias"])

    if stage == "pnet":
        t = F.max_pool2d(prelu("prelu1", conv("conv1", x)), 2, 2, ceil_mode=True)
        t = prelu("prelu3", conv("conv3", prelu("prelu2", conv("conv2", t))))
        return torch.softmax(conv("conv4_1", t), 1), conv("conv4_2", t), None
    if stage == "rnet":
        t = F.max_pool2d(prelu("prelu1", conv("conv1", x)), 3, 2, ceil_mode=True)
        t = F.max_pool2d(prelu("prelu2", conv("conv2", t)), 3, 2, ceil_mode=True)
        t = prelu("prelu3", conv("conv3", t)).permute(0, 3, 2, 1).contiguous()
        t = prelu("prelu4", dense("dense4", t.view(t.shape[0], -1)))
        return torch.softmax(dense("dense5_1", t), 1), dense("dense5_2", t), None
    t = F.max_pool2d(prelu("prelu1", conv("conv1", x)), 3, 2, ceil_mode=True)
    t = F.max_pool2d(prelu("prelu2", conv("conv2", t)), 3, 2, ceil_mode=True)
    t = F.max_pool2d(prelu("prelu3", conv("conv3", t)), 2, 2, ceil_mode=True)
    t = prelu("prelu4", conv("conv4", t)).permute(0, 3, 2, 1).contiguous()
    t = prelu("prelu5", dense("dense5", t.view(t.shape[0], -1)))
    return torch.softmax(dense("dense6_1", t), 1), dense("dense6_2", t), dense("dense6_3", t)


def fake_facenet_state_dict(stage: str, seed: int) -> dict[str, torch.Tensor]:
    """A state dict laid out as facenet-pytorch's (random values): (W, H, C) flatten order,
    landmarks 5 x then 5 y, no landmark head on P-Net and R-Net."""
    torch.manual_seed(seed)
    sd = {k: v.clone() for k, v in build_net(stage).state_dict().items()}
    if stage in wi.FLATTENED_DENSE:
        key, (c, h, w) = wi.FLATTENED_DENSE[stage]
        sd[key] = sd[key].reshape(-1, c, h, w).permute(0, 3, 2, 1).reshape(sd[key].shape[0], -1)
    head = wi.LANDMARK_HEAD[stage]
    if stage == "onet":
        x_then_y = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]
        sd[f"{head}.weight"], sd[f"{head}.bias"] = sd[f"{head}.weight"][x_then_y], sd[f"{head}.bias"][x_then_y]
    else:
        del sd[f"{head}.weight"], sd[f"{head}.bias"]
    return sd


def _check_equivalence(stage: str, theirs: dict[str, torch.Tensor]) -> None:
    model, untrained = wi.convert_facenet_state_dict(stage, theirs)
    net = build_net(stage)
    net.load_state_dict(model)
    net.eval()
    size = {"pnet": 31, "rnet": 24, "onet": 48}[stage]
    x = torch.randn(5, 3, size, size) * 0.8
    with torch.no_grad():
        probs, box, marks = their_forward(stage, theirs, x)
        logits, our_box, our_marks = net(x)
    torch.testing.assert_close(torch.softmax(logits, 1), probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(our_box, box, atol=1e-5, rtol=1e-4)
    if stage == "onet":
        assert untrained == []
        # theirs: x1..x5, y1..y5; ours: x1, y1, ..., x5, y5
        torch.testing.assert_close(our_marks.reshape(-1, 5, 2), torch.stack([marks[:, :5], marks[:, 5:]], 2),
                                   atol=1e-5, rtol=1e-4)
    else:
        assert untrained == [wi.LANDMARK_HEAD[stage]]


@pytest.mark.parametrize("stage", ["pnet", "rnet", "onet"])
def test_conversion_of_a_facenet_layout_state_dict(stage):
    _check_equivalence(stage, fake_facenet_state_dict(stage, seed=3))


def _facenet_weights_dir() -> Path:
    env = os.environ.get("MTCNN_FACENET_WEIGHTS")
    if env:
        return Path(env)
    try:
        return wi.facenet_data_dir()
    except UserError:
        pytest.skip("facenet-pytorch weights not found (install facenet-pytorch or set MTCNN_FACENET_WEIGHTS)")


@pytest.mark.parametrize("stage", ["pnet", "rnet", "onet"])
def test_conversion_of_the_published_weights(stage):
    path = _facenet_weights_dir() / f"{stage}.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    _check_equivalence(stage, torch.load(path, map_location="cpu", weights_only=True))


def test_import_writes_loadable_checkpoints(tmp_path):
    source = tmp_path / "facenet_data"
    source.mkdir()
    for i, stage in enumerate(("pnet", "rnet", "onet")):
        torch.save(fake_facenet_state_dict(stage, seed=i), source / f"{stage}.pt")
    written = wi.import_facenet_weights(source, tmp_path / "run")
    assert [p.name for p in written] == ["pnet.pt", "rnet.pt", "onet.pt"]
    payload = load_checkpoint(tmp_path / "run" / "onet.pt")
    assert payload["source"] == "facenet-pytorch" and payload["epoch"] == 0 and payload["metrics"] == {}
    assert payload["untrained"] == [] and len(payload["source_sha256"]) == 64
    assert load_checkpoint(tmp_path / "run" / "pnet.pt")["untrained"] == ["conv4_3"]
    for stage in ("pnet", "rnet", "onet"):
        load_stage_net(tmp_path / "run", stage)
    # the untrained heads are reproducible: a second import writes identical tensors
    again = wi.import_facenet_weights(source, tmp_path / "run2")
    a = load_checkpoint(written[0])["model"]["conv4_3.weight"]
    assert torch.equal(a, load_checkpoint(again[0])["model"]["conv4_3.weight"])


def test_import_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="missing onet.pt"):
        source = tmp_path / "partial"
        source.mkdir()
        torch.save(fake_facenet_state_dict("pnet", 0), source / "pnet.pt")
        torch.save(fake_facenet_state_dict("rnet", 0), source / "rnet.pt")
        wi.import_facenet_weights(source, tmp_path / "out")
    wrong = fake_facenet_state_dict("rnet", 0)
    wrong["dense4.weight"] = wrong["dense4.weight"][:, :100]
    with pytest.raises(UserError, match="dense4.weight has shape"):
        wi.convert_facenet_state_dict("rnet", wrong, source="x.pt")
    with pytest.raises(UserError, match="not a facenet-pytorch onet state dict .missing conv1.bias"):
        wi.convert_facenet_state_dict("onet", {"dense6_3.weight": torch.zeros(10, 256)}, source="y.pt")
    monkeypatch.setattr(wi.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pass the folder"):
        wi.import_facenet_weights(None, tmp_path / "out")
