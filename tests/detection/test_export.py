"""Each exported net matches the PyTorch net within 1e-4 on random inputs of several sizes."""
import numpy as np
import pytest
import torch

from mtcnn_train.checkpoint import save_checkpoint
from mtcnn_train.errors import UserError
from mtcnn_train.detection.export import export_models
from mtcnn_train.detection.onnx_runtime import OnnxNet
from mtcnn_train.nets import build_net

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    nets = {}
    for stage in ("pnet", "rnet", "onet"):
        net = build_net(stage)
        # Non-trivial PReLU slopes and biases, so a wrong layer order would show.
        for p in net.parameters():
            p.data.add_(torch.randn_like(p) * 0.05)
        save_checkpoint(run / f"{stage}.pt", {"stage": stage, "model": net.state_dict(), "epoch": 3})
        nets[stage] = net.eval()
    return run, nets


SIZES = {"pnet": [(1, 12, 12), (3, 12, 17), (2, 57, 40), (1, 203, 155)], "rnet": [(1, 24, 24), (7, 24, 24)],
         "onet": [(1, 48, 48), (5, 48, 48)]}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_nets_match_pytorch(run_dir, tmp_path, fmt):
    run, nets = run_dir
    record = export_models(run, fmt, tmp_path)
    assert set(record["models"]) == {"pnet", "rnet", "onet"}
    assert (tmp_path / "export.json").is_file()
    generator = torch.Generator().manual_seed(1)
    for stage, sizes in SIZES.items():
        path = tmp_path / record["models"][stage]["file"]
        exported = OnnxNet(path) if fmt == "onnx" else torch.jit.load(str(path))
        for batch, h, w in sizes:
            x = torch.randn(batch, 3, h, w, generator=generator)
            with torch.no_grad():
                expected = nets[stage](x)
                got = exported(x)
            assert len(got) == 3
            for e, g in zip(expected, got):
                assert e.shape == g.shape
                np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-4, rtol=0)


def test_export_errors(tmp_path):
    with pytest.raises(UserError, match="no pnet.pt"):
        export_models(tmp_path, "onnx", tmp_path / "out")
    with pytest.raises(UserError, match="unknown export format"):
        export_models(tmp_path, "tflite", tmp_path / "out")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        OnnxNet(tmp_path / "bad.onnx")


def test_export_never_writes_over_files_it_did_not_write(run_dir, tmp_path):
    run, _ = run_dir
    out = tmp_path / "out"
    out.mkdir()
    (out / "rnet.onnx").write_text("someone's notes")
    with pytest.raises(UserError, match=r"out/rnet\.onnx: exists and was not written by export"):
        export_models(run, "onnx", out)
    assert (out / "rnet.onnx").read_text() == "someone's notes" and not (out / "pnet.onnx").exists()
    # An earlier export's folder (it holds export.json) is exported into again.
    export_models(run, "onnx", tmp_path / "again")
    assert set(export_models(run, "onnx", tmp_path / "again")["models"]) == {"pnet", "rnet", "onet"}
