import dataclasses
from pathlib import Path

import pytest
import yaml

from mtcnn_train.config import Config, config_from_dict, defaults_yaml, load_config, save_config
from mtcnn_train.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_default_yaml_holds_the_paper_settings():
    cfg = load_config(REPO / "configs" / "default.yaml")
    s = cfg.sampling
    assert (s.neg_iou, s.part_iou, s.pos_iou, s.min_face_size) == (0.3, 0.4, 0.65, 20)
    assert dataclasses.astuple(s.ratio) == (3, 1, 1, 2)
    assert [(cfg.stage(n).alpha_det, cfg.stage(n).alpha_box, cfg.stage(n).alpha_landmark) for n in ("pnet", "rnet", "onet")] == [
        (1, 0.5, 0.5), (1, 0.5, 0.5), (1, 0.5, 1)]
    assert all(cfg.stage(n).ohem_keep_ratio == 0.7 for n in ("pnet", "rnet", "onet"))
    d = cfg.detection
    assert (d.min_face_size, d.scale_factor, d.thresholds) == (20, 0.709, [0.6, 0.7, 0.7])
    # default.yaml and the built-in defaults agree
    assert cfg.to_dict() == Config().to_dict()


def test_default_yaml_is_generated_from_the_dataclasses():
    assert (REPO / "configs" / "default.yaml").read_text() == defaults_yaml(), \
        "regenerate it: python -m mtcnn_train.config > mtcnn_train/configs/default.yaml"


@pytest.mark.parametrize("key, value, choices", [
    ("train.pnet.optimizer", "rmsprop", "adam, adamw or sgd"),
    ("train.rnet.lr_schedule", "linear", "constant, step or cosine"),
    ("train.onet.amp", "fp8", "off, bf16 or fp16"),
    ("train.pnet.best_by", "accuracy", "loss, loss_det, loss_box, loss_landmark, last or detection"),
    ("detection.crop_border", "pad", "zero or clip"),
    ("sampling.landmark_boxes", "guess", "auto, file or derived"),
    ("data.landmarks_format", "ibug", "auto, celeba, celeba-aligned, lfw-net or mtfl"),
])
def test_word_settings_are_checked_against_their_type(tmp_path, key, value, choices):
    section, *rest = key.split(".")
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}={value}"])
    assert str(err.value) == f"--set {key}={value}: {key}: must be {choices}, got {value!r}"
    # In a file, the message names the file and the line.
    bad = tmp_path / "bad.yaml"
    nested = "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(key.split(".")[:-1]))
    bad.write_text(nested + f"{'  ' * len(rest)}{rest[-1]}: {value}\n")
    with pytest.raises(ConfigError, match=rf"bad\.yaml:{len(rest) + 1}: {key}: must be"):
        load_config(bad)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_names(device):
    assert load_config(None, [f"train.pnet.device={device}"]).train.pnet.device == device


@pytest.mark.parametrize("device", ["gpu", "cudax", "cuda:-1", "cuda:one"])
def test_bad_device_names_fail_at_load(device):
    with pytest.raises(ConfigError, match=r"train\.pnet\.device: must be auto, cpu or cuda\[:N\]"):
        load_config(None, [f"train.pnet.device={device}"])


def test_every_config_file_loads():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)


def test_overrides_nested_and_typed():
    cfg = load_config(None, ["train.pnet.lr=0.01", "detection.thresholds=[0.5, 0.6, 0.7]", "sampling.ratio.negative=2",
                             "train.onet.epochs=3", "data.wider_root=/x"])
    assert cfg.train.pnet.lr == 0.01 and cfg.train.rnet.lr == 0.001
    assert cfg.detection.thresholds == [0.5, 0.6, 0.7]
    assert cfg.sampling.ratio.negative == 2.0 and cfg.train.onet.epochs == 3
    assert cfg.data.wider_root == "/x"


@pytest.mark.parametrize("override, fragment", [
    ("sampling.pos_iou=-0.1", "sampling.pos_iou"),
    ("sampling.neg_iou=0.5", "sampling.neg_iou"),
    ("sampling.part_iou=0.9", "sampling.part_iou"),
    ("train.pnet.lrr=1", "unknown key 'train.pnet.lrr'"),
    ("train.pnet.epochs=two", "expected a whole number"),
    ("train.pnet.epochs=0", "train.pnet.epochs"),
    ("train.pnet.ohem_keep_ratio=0", "ohem_keep_ratio"),
    ("train.onet.dropout=1", "train.onet.dropout: must lie in [0, 1)"),
    ("train.rnet.low_resolution_prob=1.5", "train.rnet.low_resolution_prob: must lie in [0, 1]"),
    ("train.pnet.dropout=0.2", "train.pnet.dropout: P-Net is fully convolutional"),
    ("detection.scale_factor=1.5", "scale_factor"),
    ("detection.rnet_score_weight=1", "detection.rnet_score_weight: must lie in [0, 1)"),
    ("detection.min_face_size=0", "detection.min_face_size"),
    ("detection.min_face_size=-10", "detection.min_face_size"),
    ("detection.min_face_size=3", "detection.min_face_size"),
    ("detection.thresholds=[0.5]", "needs 3 values"),
    ("train.pnet.lr=.nan", "finite"),
    ("train.pnet.optimizer=rmsprop", "optimizer"),
    ("train.onet.best_by=accuracy", "train.onet.best_by"),
    ("sampling.landmark_max_rotation=120", "sampling.landmark_max_rotation"),
    ("sampling.landmark_max_rotation=-5", "sampling.landmark_max_rotation"),
    ("nonsense=1", "expected section.key=value"),
    ("sampling=3", "expected section.key=value"),
    ("sampling.ratio=3", "expected a mapping"),
])
def test_bad_overrides_fail_with_one_clear_line(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert fragment in message and "\n" not in message


def test_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling:\n  neg_iou: 0.3\n  bogus: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3: unknown key 'sampling.bogus'"):
        load_config(bad)
    bad.write_text("train:\n  pnet:\n    lr: -1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3: train\.pnet\.lr: must be positive"):
        load_config(bad)
    bad.write_text("sampling:\n  neg_iou: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    cfg_file = tmp_path / "sub" / "c.yaml"
    cfg_file.write_text("data:\n  wider_root: ../wider\n")
    cfg = load_config(cfg_file)
    assert cfg.resolve_path(cfg.data.wider_root) == (tmp_path / "wider").resolve()


def test_save_and_reload_roundtrip(tmp_path):
    cfg = load_config(None, ["train.rnet.batch_size=7"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()
    assert config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text())).train.rnet.batch_size == 7


def test_a_bare_off_in_yaml_is_the_word(tmp_path):
    """YAML 1.1 reads `off` as false; for a setting whose choices include "off" it means the word."""
    path = tmp_path / "amp.yaml"
    path.write_text("train:\n  onet:\n    amp: off\n")
    assert load_config(path).train.onet.amp == "off"
    assert load_config(None, ["train.pnet.amp=off"]).train.pnet.amp == "off"
    with pytest.raises(ConfigError, match="augment"):
        load_config(None, ["train.pnet.augment=sometimes"])


def test_min_face_size_below_pnet_window_is_accepted():
    """Faces under 12 px: the pyramid upsamples (issue 21), as facenet-pytorch accepts 10."""
    assert load_config(None, ["detection.min_face_size=10"]).detection.min_face_size == 10
    assert load_config(None, ["detection.min_face_size=4"]).detection.min_face_size == 4


def test_per_stage_ratios_default_to_the_common_one_and_keep_old_fingerprints():
    from mtcnn_train.config import stage_ratio
    from mtcnn_train.samples.units import settings_fingerprint

    plain = load_config(None)
    assert plain.sampling.ratio_rnet is None and stage_ratio(plain.sampling, "rnet") == plain.sampling.ratio
    own = load_config(None, ["sampling.ratio.landmark=4", "sampling.ratio_rnet.negative=1"])
    # Shares not given take SampleRatio's defaults, not sampling.ratio's.
    assert dataclasses.asdict(stage_ratio(own.sampling, "rnet")) == {"negative": 1, "positive": 1, "part": 1, "landmark": 2}
    assert stage_ratio(own.sampling, "onet").landmark == 4 and stage_ratio(own.sampling, "pnet").negative == 3
    # Unset, the options leave the fingerprint of sets made before they existed unchanged.
    explicit = load_config(None, ["sampling.ratio_rnet=null"])
    assert settings_fingerprint(explicit, "rnet") == settings_fingerprint(plain, "rnet")
    assert settings_fingerprint(own, "rnet") != settings_fingerprint(load_config(None, ["sampling.ratio.landmark=4"]), "rnet")
    # A saved config (checkpoint, manifest) round-trips, and bad shares are one clear line.
    assert config_from_dict(own.to_dict()).sampling.ratio_rnet == own.sampling.ratio_rnet
    with pytest.raises(ConfigError, match="sampling.ratio_onet.part: a share must not be negative"):
        load_config(None, ["sampling.ratio_onet.part=-1"])
    with pytest.raises(ConfigError, match="sampling.ratio_rnet: expected a mapping"):
        load_config(None, ["sampling.ratio_rnet=3"])
