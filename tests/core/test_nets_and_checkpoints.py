import pickle

import pytest
import torch

from mtcnn_train.checkpoint import load_checkpoint, load_stage_net, save_checkpoint
from mtcnn_train.errors import UserError
from mtcnn_train.nets import NETS, PNet, build_net, normalize

# Parameter shapes of the published MTCNN models (as converted in facenet-pytorch).
PUBLISHED_SHAPES = {
    "pnet": {"conv1.weight": (10, 3, 3, 3), "conv2.weight": (16, 10, 3, 3), "conv3.weight": (32, 16, 3, 3),
             "conv4_1.weight": (2, 32, 1, 1), "conv4_2.weight": (4, 32, 1, 1)},
    "rnet": {"conv1.weight": (28, 3, 3, 3), "conv2.weight": (48, 28, 3, 3), "conv3.weight": (64, 48, 2, 2),
             "dense4.weight": (128, 576), "dense5_1.weight": (2, 128), "dense5_2.weight": (4, 128)},
    "onet": {"conv1.weight": (32, 3, 3, 3), "conv2.weight": (64, 32, 3, 3), "conv3.weight": (64, 64, 3, 3),
             "conv4.weight": (128, 64, 2, 2), "dense5.weight": (256, 1152), "dense6_1.weight": (2, 256),
             "dense6_2.weight": (4, 256), "dense6_3.weight": (10, 256)},
}


@pytest.mark.parametrize("stage", list(NETS))
def test_parameter_shapes_match_the_published_models(stage):
    state = build_net(stage).state_dict()
    for name, shape in PUBLISHED_SHAPES[stage].items():
        assert tuple(state[name].shape) == shape, name


@pytest.mark.parametrize("stage", list(NETS))
def test_output_shapes(stage):
    net = build_net(stage)
    size = net.input_size
    cls, box, lmk = net(torch.zeros(3, 3, size, size))
    assert cls.reshape(3, -1).shape == (3, 2) and box.reshape(3, -1).shape == (3, 4) and lmk.reshape(3, -1).shape == (3, 10)


def test_pnet_is_fully_convolutional():
    cls, box, lmk = PNet()(torch.zeros(1, 3, 50, 70))
    # 12x12 windows at stride 2: (50 - 12) / 2 + 1 = 20 rows, 30 columns
    assert cls.shape == (1, 2, 20, 30) and box.shape == (1, 4, 20, 30) and lmk.shape == (1, 10, 20, 30)


@pytest.mark.parametrize("stage", ["rnet", "onet"])
def test_dropout_acts_in_training_only_and_leaves_the_weights_alone(stage):
    torch.manual_seed(0)
    net = build_net(stage, dropout=0.5)
    plain = build_net(stage)
    assert net.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(8, 3, net.input_size, net.input_size)
    net.train()
    assert not torch.equal(net(x)[0], net(x)[0])  # a fresh mask per call
    net.eval(), plain.eval()
    for ours, reference in zip(net(x), plain(x)):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_pnet_refuses_dropout():
    with pytest.raises(ValueError, match="P-Net"):
        build_net("pnet", dropout=0.1)


def test_normalize():
    x = torch.tensor([0, 127.5, 255])
    assert torch.allclose(normalize(x), torch.tensor([-127.5 / 128, 0, 127.5 / 128]))


def test_checkpoint_roundtrip_and_weights_only(tmp_path):
    net = build_net("rnet")
    save_checkpoint(tmp_path / "rnet.pt", {"stage": "rnet", "model": net.state_dict(), "metrics": {"acc": 0.5}})
    loaded = load_stage_net(tmp_path, "rnet")
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    with pytest.raises(UserError, match="holds rnet weights"):
        load_stage_net(tmp_path / "rnet.pt", "onet")


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"stage": "pnet", "model": _Exploit()}, evil)
    with pytest.raises(UserError, match="not a valid mtcnn-train checkpoint"):
        load_checkpoint(evil)
    (tmp_path / "junk.pt").write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(UserError):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
