"""Own data through the pipeline: the synthetic WIDER set converted to COCO JSON and to YOLO files
gives the very samples its WIDER form gives, cut (P-Net) and mined (R-Net); and ``pipeline
--init`` fine-tunes from another run and says so in its checkpoints."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtcnn_train.checkpoint import load_checkpoint
from mtcnn_train.config import config_from_dict, load_config
from mtcnn_train.datasets.convert import convert_dataset
from mtcnn_train.synthetic import make_synthetic, synthetic_config
from mtcnn_train.datasets.wider import wider_paths
from mtcnn_train.errors import UserError
from mtcnn_train.pipeline import DEMO_CONFIG, run_pipeline
from mtcnn_train.samples.generate import generate_samples
from mtcnn_train.samples.shards import SampleSet
from mtcnn_train.training.trainer import train_stage

# Small: few images, few crops, one worker, one quick P-Net epoch (the test compares samples, it
# does not need a good detector).
FAST = ["sampling.workers=1", "sampling.random_negatives_per_image=10", "sampling.crops_per_face=8",
        "sampling.landmark_crops_per_face=4", "sampling.total_rnet=0", "train.pnet.epochs=1",
        "train.pnet.threads=1", "data.val_fraction=0.2"]


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """The synthetic set's WIDER training split, and the same split as COCO JSON and as YOLO."""
    root = tmp_path_factory.mktemp("own")
    make_synthetic(root / "syn", num_images=24, seed=2)
    annotation, images = wider_paths(root / "syn" / "wider", "train")
    convert_dataset("wider", annotation, "coco", root / "train.json", images)
    convert_dataset("wider", annotation, "yolo", root / "yolo", images)
    base = load_config(DEMO_CONFIG, FAST).to_dict()
    base["data"].update(synthetic_config(root / "syn")["data"])
    wider = config_from_dict(base)
    coco, yolo = (config_from_dict({**base, "data": {**base["data"], "wider_root": None, "boxes": str(path)}})
                  for path in (root / "train.json", root / "yolo" / "data.yaml"))
    return root, {"wider": wider, "coco": coco, "yolo": yolo}


def _same_samples(a: Path, b: Path) -> bool:
    first, second = SampleSet.open([a]).arrays(), SampleSet.open([b]).arrays()
    return (all(np.array_equal(first[k], second[k]) for k in ("images", "labels", "sources"))
            and all(np.array_equal(first[k], second[k], equal_nan=True) for k in ("boxes", "landmarks", "crops")))


def test_coco_and_yolo_forms_cut_and_mine_the_same_samples(forms):
    root, configs = forms
    cut = {name: generate_samples(cfg, root / f"pnet-{name}", "pnet", progress=False)
           for name, cfg in configs.items()}
    assert cut["wider"].counts["positive"] > 0 and cut["wider"].counts["landmark"] > 0
    assert cut["coco"].counts == cut["wider"].counts == cut["yolo"].counts
    assert _same_samples(root / "pnet-coco", root / "pnet-wider")
    assert _same_samples(root / "pnet-yolo", root / "pnet-wider")
    # The synthetic set flags some faces invalid; YOLO carries them as the class named "ignore".
    assert cut["yolo"].stats["faces_not_usable"] == cut["wider"].stats["faces_not_usable"] > 0

    # Mining runs the same P-Net over each form's training images.
    train_stage("pnet", configs["wider"], [root / "pnet-wider"], root / "run")
    mined = {name: generate_samples(cfg, root / f"rnet-{name}", "rnet", root / "run", progress=False)
             for name, cfg in configs.items()}
    assert mined["wider"].counts["negative"] > 0
    assert mined["coco"].counts == mined["wider"].counts == mined["yolo"].counts
    assert mined["coco"].mining == mined["wider"].mining == mined["yolo"].mining


def test_pipeline_init_fine_tunes_from_the_given_run_and_records_it(forms, tmp_path):
    from mtcnn_train.checkpoint import save_checkpoint
    from mtcnn_train.nets import build_net

    _, configs = forms
    cfg = configs["coco"]
    start = tmp_path / "start"
    train_stage("pnet", cfg, [generate_samples(cfg, tmp_path / "samples", "pnet", progress=False).out_dir], start)
    with pytest.raises(UserError, match="no .*rnet.pt"):
        run_pipeline(cfg, tmp_path / "tuned", stages=("pnet", "rnet"), progress=False, echo=print, init=start)
    # A folder whose config.yaml some other tool wrote is not a run folder to write into.
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.yaml").write_text("my: notes\n")
    with pytest.raises(UserError, match="config.yaml: exists and is not a config an earlier pipeline run wrote"):
        run_pipeline(cfg, tmp_path / "foreign", stages=("pnet",), progress=False, echo=print)
    assert (tmp_path / "foreign" / "config.yaml").read_text() == "my: notes\n"
    save_checkpoint(start / "rnet.pt", {"stage": "rnet", "model": build_net("rnet").state_dict(), "source": "test"})

    lines: list[str] = []
    cfg.train.rnet.epochs, cfg.train.rnet.threads = 1, 1
    run_pipeline(cfg, tmp_path / "tuned", stages=("pnet", "rnet"), progress=False, echo=lines.append, init=start)
    for stage in ("pnet", "rnet"):
        record = load_checkpoint(tmp_path / "tuned" / f"{stage}.pt")["initialised_from"]
        assert record["path"] == str((start / f"{stage}.pt").resolve())
        assert record["sha256"] == hashlib.sha256((start / f"{stage}.pt").read_bytes()).hexdigest()
        assert load_checkpoint(tmp_path / "tuned" / stage / "last.pt")["initialised_from"] == record
    assert load_checkpoint(tmp_path / "tuned" / "rnet.pt")["initialised_from"]["source"] == "test"
    tuned = load_checkpoint(tmp_path / "tuned" / "pnet.pt")["model"]
    assert any(not torch.equal(tuned[k], v) for k, v in load_checkpoint(start / "pnet.pt")["model"].items())
    # R-Net was mined with the P-Net fine-tuned in this run, not the starting one.
    manifest = json.loads((tmp_path / "tuned" / "samples" / "rnet" / "manifest.json").read_text())
    assert Path(manifest["mining"]["weights"]).resolve() == (tmp_path / "tuned").resolve()


def test_a_box_set_with_keypoints_gives_landmark_crops_of_its_training_images(forms, tmp_path):
    root, configs = forms
    celeba = next((root / "syn" / "celeba").rglob("list_landmarks_celeba.txt"))
    convert_dataset("auto", celeba, "coco", tmp_path / "faces.json")   # one face with 5 keypoints per image
    data = {**configs["coco"].to_dict()["data"], "boxes": str(tmp_path / "faces.json"), "landmarks": None}
    cfg = config_from_dict({**configs["coco"].to_dict(), "data": data})
    report = generate_samples(cfg, tmp_path / "samples", "pnet", progress=False)
    manifest = json.loads((tmp_path / "samples" / "manifest.json").read_text())
    source = manifest["image_sources"]["landmarks"]
    train_images = manifest["image_sources"]["wider"]["train_images"]
    assert source["format"] == "boxes" and source["faces"] == train_images > 0
    assert report.counts["landmark"] > 0 and report.stats["landmark_faces"] == train_images
