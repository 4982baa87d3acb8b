"""The trainer in-process on tiny sample sets: run folder, checkpoints, TensorBoard, resume, refusals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from mtcnn_train.checkpoint import load_stage_net
from mtcnn_train.config import load_config
from mtcnn_train.errors import UserError
from mtcnn_train.training import engine, trainer
from mtcnn_train.training.distributed import DistContext, rank_slice
from mtcnn_train.training.metrics import MetricSums
from mtcnn_train.training.stage_run import prepare_run
from mtcnn_train.training.trainer import train_stage

from tests.training.conftest import tiny_config, write_tiny_samples

SCALARS = [f"{phase}/{name}" for phase in ("train", "val")
           for name in ("loss", "loss_det", "loss_box", "loss_landmark", "accuracy", "recall", "precision",
                        "box_l2", "landmark_l2")]
SCALARS += ["epoch/lr", "epoch/samples_per_sec", "step/loss", "step/loss_det", "step/loss_box",
            "step/loss_landmark", "step/lr", "step/samples_per_sec"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    samples = write_tiny_samples(root / "samples", count=400, size=12)
    cfg = tiny_config("pnet", epochs=3)
    result = train_stage("pnet", cfg, [samples], root / "out")
    return root / "out", samples, result


def test_run_folder_layout_and_payloads(finished_run):
    run_dir, _, result = finished_run
    stage = run_dir / "pnet"
    for name in ("last.pt", "best.pt", "metrics.jsonl", "config.yaml"):
        assert (stage / name).is_file(), name
    assert list((stage / "tb").glob("events.out.tfevents.*"))
    weights = torch.load(run_dir / "pnet.pt", weights_only=True)
    assert {"stage", "model", "config", "metrics", "epoch"} <= set(weights)
    assert weights["stage"] == "pnet" and weights["epoch"] == result["best_epoch"]
    last = torch.load(stage / "last.pt", weights_only=True)
    assert last["finished"] and last["epoch"] == 3 and last["step_in_epoch"] == 0
    assert {"optimizer", "scheduler", "rng", "history", "config"} <= set(last)
    net = load_stage_net(run_dir, "pnet")
    assert torch.equal(net.conv1.weight, weights["model"]["conv1.weight"])
    lines = (stage / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for key in ("accuracy", "recall", "precision", "box_l2", "landmark_l2", "loss"):
        assert key in records[-1]["val"] and key in records[-1]["train"]
    saved_cfg = yaml.safe_load((stage / "config.yaml").read_text())
    assert saved_cfg["train"]["pnet"]["epochs"] == 3
    assert result["epoch"] == 3 and result["val"]["accuracy"] == pytest.approx(records[-1]["val"]["accuracy"])


def test_learns_the_tiny_separable_set(finished_run):
    _, _, result = finished_run
    assert result["val"]["accuracy"] > 0.9
    assert result["train"]["loss"] < 1.0


def test_tensorboard_holds_every_scalar(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _, _ = finished_run
    events = EventAccumulator(str(run_dir / "pnet" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    missing = [tag for tag in SCALARS if tag not in tags]
    assert not missing, f"missing {missing}; have {sorted(tags)}"
    assert [e.step for e in events.Scalars("val/accuracy")] == [1, 2, 3]
    assert len(events.Scalars("step/loss")) >= 3


def test_refuses_to_overwrite_a_finished_stage(finished_run, tmp_path):
    run_dir, samples, _ = finished_run
    with pytest.raises(UserError, match="already trained"):
        train_stage("pnet", tiny_config("pnet"), [samples], run_dir)
    # --resume of a finished stage reports it without training again.
    before = (run_dir / "pnet.pt").read_bytes()
    result = train_stage("pnet", tiny_config("pnet"), [samples], run_dir, resume=True)
    assert result["epoch"] == 3 and (run_dir / "pnet.pt").read_bytes() == before
    with pytest.raises(UserError, match="contradict"):
        train_stage("pnet", tiny_config("pnet"), [samples], run_dir, resume=True, force=True)


def test_force_trains_again_and_init_starts_from_weights(finished_run, tmp_path):
    run_dir, samples, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    result = train_stage("pnet", tiny_config("pnet", epochs=1), [samples], copy, force=True)
    assert result["epoch"] == 1
    assert len((copy / "pnet" / "metrics.jsonl").read_text().splitlines()) == 1
    run = prepare_run("pnet", tiny_config("pnet"), [samples], init=run_dir)
    expected = load_stage_net(run_dir, "pnet").state_dict()
    assert all(torch.equal(run.net.state_dict()[k], v) for k, v in expected.items())


def test_force_keeps_the_finished_stage_when_the_new_run_cannot_start(finished_run, tmp_path):
    """--force clears the old stage only once the samples and --init weights have loaded."""
    run_dir, samples, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    with pytest.raises(UserError):
        train_stage("pnet", tiny_config("pnet", epochs=1), [tmp_path / "no-samples"], copy, force=True)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        train_stage("pnet", tiny_config("pnet", epochs=1), [samples], copy, force=True, init=garbage)
    assert {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    # Fine-tuning a stage from its own finished weights, in place, works: they load before they go.
    result = train_stage("pnet", tiny_config("pnet", epochs=1), [samples], copy, force=True, init=copy)
    assert result["epoch"] == 1 and (copy / "pnet.pt").is_file()


def test_selection_score_ranks_epochs_by_the_chosen_loss():
    metrics = {"loss": 0.3, "loss_det": 0.2, "loss_box": 0.1, "loss_landmark": 0.05}
    assert trainer.selection_score("loss", metrics, 4) == 0.3
    assert trainer.selection_score("loss_landmark", metrics, 4) == 0.05
    # "last": a later epoch always ranks better.
    assert trainer.selection_score("last", metrics, 5) < trainer.selection_score("last", metrics, 4)
    # A loss with nothing to measure (no landmark samples) falls back to the total.
    assert trainer.selection_score("loss_landmark", {**metrics, "loss_landmark": float("nan")}, 4) == 0.3


def test_best_by_last_keeps_the_final_epoch(tmp_path, pnet_samples):
    # Whatever the validation losses did, "last" makes the final epoch the stage's weights.
    result = train_stage("pnet", tiny_config("pnet", epochs=3, best_by="last"), [pnet_samples], tmp_path / "out")
    assert result["best_epoch"] == 3
    weights = torch.load(tmp_path / "out" / "pnet.pt", weights_only=True)
    last = torch.load(tmp_path / "out" / "pnet" / "last.pt", weights_only=True)
    assert weights["epoch"] == 3
    assert all(torch.equal(weights["model"][k], v) for k, v in last["model"].items())


def test_best_by_detection_keeps_the_epoch_the_scorer_ranks_highest(tmp_path, pnet_samples):
    scores = iter([0.4, 0.7, 0.5])
    seen_weights = []

    def scorer(net):
        assert not net.training  # measured like the detector runs it
        seen_weights.append(net.conv1.weight.detach().clone())
        return {"recall@0.65": 0.9, "score": next(scores)}

    result = train_stage("pnet", tiny_config("pnet", epochs=3, best_by="detection"), [pnet_samples], tmp_path / "out",
                         epoch_scorer=scorer)
    assert result["best_epoch"] == 2 and result["best_detection"]["score"] == 0.7
    weights = torch.load(tmp_path / "out" / "pnet.pt", weights_only=True)
    assert weights["epoch"] == 2 and torch.equal(weights["model"]["conv1.weight"], seen_weights[1])
    assert weights["window_rule"] == "exact"  # our crops are exact pixel-edge squares
    records = [json.loads(line) for line in (tmp_path / "out" / "pnet" / "metrics.jsonl").read_text().splitlines()]
    assert [r["detection"]["score"] for r in records] == [0.4, 0.7, 0.5]
    assert trainer.selection_score("detection", {"loss": 0.3, "detection": {"score": 0.8}}, 1) == -0.8
    # Without a scorer there is nothing to rank by: one clear line, before any training.
    with pytest.raises(UserError, match="best_by: detection needs the held-out WIDER images"):
        train_stage("pnet", tiny_config("pnet", epochs=1, best_by="detection"), [pnet_samples], tmp_path / "other")


def _kept_epoch(aps, landmark_losses, tolerance):
    """Replay epochs (AP, validation landmark loss) through the trainer's rule: the kept epoch."""
    from mtcnn_train.config import StageTrainConfig
    from mtcnn_train.training.state import Progress

    cfg = StageTrainConfig(best_by="detection", best_by_tolerance=tolerance)
    progress = Progress()
    for epoch, (ap, landmark) in enumerate(zip(aps, landmark_losses), 1):
        record = {"epoch": epoch, "train": {"loss": 1.0}, "val": {"loss": 1.0, "loss_landmark": landmark},
                  "detection": {"score": ap}}
        progress.history.append(record)
        score = trainer.selection_score("detection", trainer._ranked_metrics(record), epoch)
        if trainer.replaces_kept_epoch(cfg, progress, record, score):
            progress.best_loss, progress.best_epoch = score, epoch
    return progress.best_epoch


def test_best_by_tolerance_breaks_near_ties_by_the_landmark_loss():
    # The lenient12 O-Net's 12 epochs (validation AP, validation landmark loss x 1000).
    aps = [0.6858, 0.6913, 0.7409, 0.7353, 0.7706, 0.7558, 0.7503, 0.7672, 0.7381, 0.7676, 0.7696, 0.7675]
    landmarks = [16.1, 14.6, 11.1, 14.5, 10.3, 12.0, 7.9, 7.3, 6.3, 6.0, 5.8, 5.77]
    assert _kept_epoch(aps, landmarks, 0.0) == 5  # AP alone: the early spike
    assert _kept_epoch(aps, landmarks, 0.005) == 12  # within 0.005 of it, the best landmarks
    assert _kept_epoch(aps, landmarks, 0.0005) == 5  # epoch 11 is 0.001 below: not within
    # A clearly better measure always wins, whatever its landmark loss.
    assert _kept_epoch([0.5, 0.6], [1.0, 9.0], 0.05) == 2
    # A tie with a worse landmark loss does not replace the kept epoch.
    assert _kept_epoch([0.5, 0.51], [1.0, 2.0], 0.05) == 1
    # No drift: each epoch within the tolerance of the one before, but the kept epoch stays within
    # the tolerance of the best measure seen.
    assert _kept_epoch([0.70, 0.696, 0.692, 0.688], [4.0, 3.0, 2.0, 1.0], 0.005) == 2
    # Without a landmark loss to compare (NaN), a tie goes by the measure alone.
    assert _kept_epoch([0.5, 0.502], [float("nan"), float("nan")], 0.05) == 2
    assert _kept_epoch([0.5, 0.498], [float("nan"), float("nan")], 0.05) == 1


def test_best_by_tolerance_is_checked_at_load():
    from mtcnn_train.errors import ConfigError

    with pytest.raises(ConfigError, match="best_by_tolerance: must lie in"):
        load_config(None, ["train.onet.best_by_tolerance=-0.1"])
    with pytest.raises(ConfigError, match="no measure to be tolerant of"):
        load_config(None, ["train.onet.best_by=last", "train.onet.best_by_tolerance=0.01"])
    with pytest.raises(ConfigError, match="best_by_tie_break: must be"):
        load_config(None, ["train.onet.best_by_tie_break=accuracy"])


def test_an_unfinished_stage_needs_resume_or_force(tmp_path, pnet_samples):
    (tmp_path / "out" / "pnet").mkdir(parents=True)
    (tmp_path / "out" / "pnet" / "last.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="--resume"):
        train_stage("pnet", tiny_config("pnet"), [pnet_samples], tmp_path / "out")


def test_crop_size_must_match_the_stage(pnet_samples, tmp_path):
    with pytest.raises(UserError, match="24x24"):
        train_stage("rnet", tiny_config("rnet"), [pnet_samples], tmp_path / "out")


@pytest.mark.parametrize("stage, size, ema_decay", [("pnet", 12, 0.0), ("rnet", 24, 0.0), ("pnet", 12, 0.9)])
def test_resume_from_a_mid_epoch_checkpoint_reaches_the_same_weights(tmp_path, monkeypatch, stage, size, ema_decay):
    """Copy the mid-epoch last.pt aside during a run, resume from the copy: bit-identical result
    (the weight average too, when there is one)."""
    samples = write_tiny_samples(tmp_path / "samples", count=240, size=size)
    cfg = tiny_config(stage, epochs=2, batch_size=16, checkpoint_every_steps=3, ema_decay=ema_decay)
    snapshot = tmp_path / "snapshot"
    real_save = trainer.save_checkpoint
    taken = []

    def save_and_copy(path, payload):
        real_save(path, payload)
        if Path(path).name == "last.pt" and payload["epoch"] == 1 and payload["step_in_epoch"] > 0 and not taken:
            (snapshot / stage).mkdir(parents=True)
            shutil.copy(path, snapshot / stage / "last.pt")
            taken.append(True)

    monkeypatch.setattr(trainer, "save_checkpoint", save_and_copy)
    train_stage(stage, cfg, [samples], tmp_path / "full")
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    assert taken, "no mid-epoch checkpoint in epoch 2"
    train_stage(stage, cfg, [samples], snapshot, resume=True)
    full = torch.load(tmp_path / "full" / stage / "last.pt", weights_only=True)
    resumed = torch.load(snapshot / stage / "last.pt", weights_only=True)
    for key, tensor in full["model"].items():
        assert torch.equal(tensor, resumed["model"][key]), key
    for key, state in full["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(resumed["optimizer"]["state"][key][name]))
    assert full["history"][-1]["train"] == resumed["history"][-1]["train"]
    assert ("ema" in full) == (ema_decay > 0)
    for key, tensor in full.get("ema", {}).items():
        assert torch.equal(tensor, resumed["ema"][key]), key


def test_each_rank_takes_a_disjoint_part_of_the_batch():
    parts = [rank_slice(64, DistContext(rank, 4, rank)) for rank in range(4)]
    covered = [i for part in parts for i in range(64)[part]]
    assert covered == list(range(64))
    with pytest.raises(UserError, match="cannot be split"):
        rank_slice(3, DistContext(0, 4, 0))


def test_cli_reports_a_wrong_sample_size_in_one_line(cli_runner, pnet_samples, tmp_path):
    result = cli_runner("onet", "--samples", pnet_samples, "--out", tmp_path / "out")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "48x48" in lines[0], result.stderr


def test_bf16_autocast_trains_and_fp16_needs_cuda(pnet_samples, tmp_path):
    result = train_stage("pnet", tiny_config("pnet", epochs=1, amp="bf16"), [pnet_samples], tmp_path / "bf16")
    assert result["train"]["loss"] == pytest.approx(result["train"]["loss"])  # finite, not NaN
    weights = torch.load(tmp_path / "bf16" / "pnet.pt", weights_only=True)["model"]
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in weights.values())
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="fp16 needs a CUDA"):
            train_stage("pnet", tiny_config("pnet", amp="fp16", device="cpu"), [pnet_samples], tmp_path / "fp16")


def test_weight_average_follows_the_steps_and_is_what_is_measured_and_saved(tmp_path, pnet_samples):
    """With ema_decay d the average starts as the first step's weights, then moves by (1 - d) of
    the gap after each step; validation and the saved weights use it, training the raw net."""
    decay = 0.8
    cfg = tiny_config("pnet", epochs=1, ema_decay=decay, best_by="last")
    run = prepare_run("pnet", cfg, [pnet_samples])
    expected = None
    for _ in engine.train_steps(run, 0, 0, run.steps_per_epoch, MetricSums(run.device)):
        raw = [p.detach().clone() for p in run.net.parameters()]
        expected = raw if expected is None else [decay * e + (1 - decay) * r for e, r in zip(expected, raw)]
    averaged = list(run.ema.module.parameters())
    for want, got, raw in zip(expected, averaged, run.net.parameters()):
        torch.testing.assert_close(got, want)
        assert not torch.equal(got, raw)
    assert run.eval_net is run.ema.module

    train_stage("pnet", cfg, [pnet_samples], tmp_path / "out")
    saved = torch.load(tmp_path / "out" / "pnet.pt", weights_only=True)["model"]
    last = torch.load(tmp_path / "out" / "pnet" / "last.pt", weights_only=True)
    for key, tensor in saved.items():
        assert torch.equal(tensor, last["ema"][f"module.{key}"]), key
    assert not torch.equal(saved["conv1.weight"], last["model"]["conv1.weight"])


def test_ema_decay_is_checked_at_load():
    with pytest.raises(UserError, match=r"train.onet.ema_decay: must lie in \[0, 1\)"):
        load_config(None, ["train.onet.ema_decay=1.0"])


def test_a_diverged_training_is_an_error_not_a_finished_stage(tmp_path, pnet_samples):
    """A NaN loss makes every later number meaningless: the run stops with an error (exit 2 at
    the CLI) and publishes no RUN_DIR/pnet.pt."""
    with pytest.raises(UserError, match=r"pnet: training diverged in epoch 1 \(mean loss nan\); lower train.pnet.lr"):
        train_stage("pnet", tiny_config("pnet", lr=1e9), [pnet_samples], tmp_path / "run")
    assert not (tmp_path / "run" / "pnet.pt").exists()
