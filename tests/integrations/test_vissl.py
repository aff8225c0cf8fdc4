"""ssl_ext's plugins inside the real VISSL 0.1.6 trainer (CPU, gloo, tiny ViT, a few iterations).

VISSL lives in an isolated folder (tools/setup_vissl.sh, .cache/vissl) that is put first on
PYTHONPATH of a subprocess, so its bundled classy_vision/fairscale never meet ssl_ext's
environment. Each run goes through ssl_ext's launcher (``ssl_ext.integrations.vissl.
run_distributed_engines``), with one recording hook added by tests/integrations/vissl_driver.py.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
VISSL_DIR = REPO / ".cache" / "vissl"
DRIVER = Path(__file__).with_name("vissl_driver.py")


@pytest.fixture(scope="module")
def vissl_install():
    """The isolated VISSL install (made by tools/setup_env.sh --test; made here if missing, reused when stamped)."""
    subprocess.run(["bash", str(REPO / "tools" / "setup_vissl.sh")], check=True, cwd=REPO,
                   env={**os.environ, "PYTHON": sys.executable})
    return VISSL_DIR


def base_config(**data_train):
    """A VISSL config: tiny ViT, one MLP head, SGD with weight decay, CPU/gloo, one process."""
    train = {
        "DATA_SOURCES": ["synthetic"], "DATASET_NAMES": ["synthetic"], "BATCHSIZE_PER_REPLICA": 8,
        "LABEL_TYPE": "sample_index", "DEFAULT_GRAY_IMG_SIZE": 32, "RANDOM_SYNTHETIC_IMAGES": True,
        "TRANSFORMS": [{"name": "ImgReplicatePil", "num_times": 2}, {"name": "RandomResizedCrop", "size": 32},
                       {"name": "ToTensor"}],
        "COLLATE_FUNCTION": "simclr_collator", "DATA_LIMIT": 16, "DROP_LAST": True,
    }
    train.update(data_train)
    return {
        "VERBOSE": False, "LOG_FREQUENCY": 1, "SEED_VALUE": 0, "TEST_MODEL": False,
        "MULTI_PROCESSING_METHOD": "fork", "HOOKS": {"PERF_STATS": {"MONITOR_PERF_STATS": False}},
        "DATA": {"NUM_DATALOADER_WORKERS": 0, "TRAIN": train},
        "METERS": {"name": ""},
        "MODEL": {
            "TRUNK": {"NAME": "vision_transformer", "VISION_TRANSFORMERS": {
                "IMAGE_SIZE": 32, "PATCH_SIZE": 8, "NUM_LAYERS": 1, "NUM_HEADS": 2, "HIDDEN_DIM": 32, "MLP_DIM": 64}},
            "HEAD": {"PARAMS": [["mlp", {"dims": [32, 16]}]]},
            "SYNC_BN_CONFIG": {"CONVERT_BN_TO_SYNC_BN": False},
        },
        "OPTIMIZER": {
            "name": "sgd", "use_larc": False, "weight_decay": 0.01, "momentum": 0.9, "nesterov": False,
            "num_epochs": 1, "param_schedulers": {"lr": {"name": "constant", "value": 0.1, "update_interval": "step"}},
        },
        "DISTRIBUTED": {"BACKEND": "gloo", "NUM_NODES": 1, "NUM_PROC_PER_NODE": 1, "INIT_METHOD": "tcp", "RUN_ID": "auto"},
        "MACHINE": {"DEVICE": "cpu"},
        "CHECKPOINT": {"DIR": "./checkpoints", "AUTO_RESUME": False},
    }


def run_vissl(run_dir: Path, config: dict, vissl_dir: Path) -> list:
    """Run VISSL's train engine on ``config`` in ``run_dir``; one record per rank, with VISSL's logged losses."""
    config_dir = run_dir / "configs" / "config" / "ssl_ext_test"  # VISSL's launcher searches ./configs
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "run.yaml").write_text("# @package _global_\n" + yaml.safe_dump({"config": config}))
    record_path = run_dir / "record"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(vissl_dir), str(REPO)]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(DRIVER), str(record_path), "config=ssl_ext_test/run"],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"VISSL run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    logged = [json.loads(line) for line in (run_dir / "checkpoints" / "stdout.json").read_text().splitlines()]
    terms_file = run_dir / "checkpoints" / "ssl_ext_loss_terms.jsonl"
    records = []
    for rank in range(config["DISTRIBUTED"]["NUM_PROC_PER_NODE"]):
        record = torch.load(f"{record_path}.rank{rank}", weights_only=False)
        record["vissl_logged_losses"] = [entry["loss"] for entry in logged]
        record["terms_file"] = [json.loads(line) for line in terms_file.read_text().splitlines()] if terms_file.exists() else []
        records.append(record)
    return records


def test_simclr_loss_in_vissl_equals_vissls_own_simclr_info_nce_loss(tmp_path, vissl_install):
    reference = base_config()
    reference["LOSS"] = {"name": "simclr_info_nce_loss",
                         "simclr_info_nce_loss": {"temperature": 0.1, "buffer_params": {"embedding_dim": 16}}}
    ours = base_config()
    ours["TRAINER"] = {"TASK_NAME": "ssl_ext_task"}
    ours["LOSS"] = {"name": "ssl_ext_loss", "ssl_ext_loss": {"NAME": "simclr_loss", "PARAMS": {"temperature": 0.1}}}

    (vissl_run,) = run_vissl(tmp_path / "vissl_loss", reference, vissl_install)
    (ssl_ext_run,) = run_vissl(tmp_path / "ssl_ext_loss", ours, vissl_install)

    assert len(vissl_run["steps"]) == len(ssl_ext_run["steps"]) == 2
    # Same seed, same batches (VISSL's simclr_collator stacks the two views view-major).
    for a, b in zip(vissl_run["steps"], ssl_ext_run["steps"]):
        assert torch.equal(a["data_idx"], b["data_idx"])
    first_vissl, first_ours = vissl_run["steps"][0]["loss"], ssl_ext_run["steps"][0]["loss"]
    assert first_ours == pytest.approx(first_vissl, rel=1e-6, abs=1e-6)
    assert first_ours > 1.0  # a real InfoNCE value over 14 negatives, not a degenerate zero
    # Same update rule afterwards: the second step's losses stay within float round-off.
    assert ssl_ext_run["steps"][1]["loss"] == pytest.approx(vissl_run["steps"][1]["loss"], rel=1e-4)
    # What VISSL itself logged (stdout.json) is the scalar our loss returned.
    assert ssl_ext_run["vissl_logged_losses"][0] == pytest.approx(first_ours, rel=1e-6)
    assert [t["loss"] for t in ssl_ext_run["terms_file"]] == pytest.approx([s["loss"] for s in ssl_ext_run["steps"]])


def write_labelled_images(root: Path, num_classes: int, per_class: int):
    """Tiny RGB PNGs (class-dependent colour plus noise) and VISSL disk_filelist .npy files of paths and labels."""
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for label in range(num_classes):
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(32, 32, 3)) + np.array([60 * label, 30, 200 - 60 * label])
            path = root / f"class{label}_{i}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            paths.append(str(path))
            labels.append(label)
    np.save(root / "images.npy", np.array(paths))
    np.save(root / "labels.npy", np.array(labels, dtype=np.int64))
    return np.array(labels)


SSL_EXT_MASKED_VIT = {"NAME": "ssl_ext_trunk", "SSL_EXT_TRUNK": {
    "NAME": "vit", "MASK_STUDENT": True,
    "PARAMS": {"preset": "custom", "patch_size": 8, "img_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2,
               "patch_drop": 0.3}}}


@pytest.mark.parametrize("ranks,trunk", [(1, "vissl_vit"), (2, "ssl_ext_masked_vit")])
def test_pmsn_in_vissl_trains_prototypes_follows_ema_teacher_and_class_imbalanced_batches(
        tmp_path, vissl_install, ranks, trunk):
    """Global batch 8 (8 per rank, or 4 on each of 2 gloo ranks), 4 crops per image, 3 iterations; VISSL's
    ViT, or ssl_ext's ViT through ``ssl_ext_trunk`` with MSN's masked student (patch drop) and whole-crop teacher."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    labels = write_labelled_images(data_dir, num_classes=3, per_class=8)
    config = base_config(
        DATA_SOURCES=["disk_filelist"], DATASET_NAMES=["ssl_ext_test_images"],
        DATA_PATHS=[str(data_dir / "images.npy")], LABEL_SOURCES=["disk_filelist"],
        LABEL_PATHS=[str(data_dir / "labels.npy")], LABEL_TYPE="standard", DATA_LIMIT=-1,
        # MSN-style crops: 2 large (32 px: target + anchor) then 2 focal (16 px), one tensor per crop.
        TRANSFORMS=[
            {"name": "ImgPilToMultiCrop", "total_num_crops": 4, "size_crops": [32, 16], "num_crops": [2, 2],
             "crop_scales": [[0.5, 1.0], [0.2, 0.5]]},
            {"name": "ToTensor"},
        ],
        COLLATE_FUNCTION="multicrop_collator",
        SSL_EXT_SAMPLER={"NAME": "class_imbalanced", "PARAMS": {"classes_per_batch": 2}},
        BATCHSIZE_PER_REPLICA=8 // ranks,
    )
    config["DISTRIBUTED"]["NUM_PROC_PER_NODE"] = ranks
    if trunk == "ssl_ext_masked_vit":
        config["MODEL"]["TRUNK"] = SSL_EXT_MASKED_VIT
    config["TRAINER"] = {"TASK_NAME": "ssl_ext_task"}
    config["LOSS"] = {"name": "ssl_ext_loss", "ssl_ext_loss": {
        "NAME": "pmsn_loss",
        "PARAMS": {"num_prototypes": 8, "embed_dim": 16, "temperature": 0.1, "sharpen_temperature": 0.25,
                   "sinkhorn_iterations": 3, "prior": {"NAME": "power_law", "PARAMS": {"tau": 0.25}}},
        "STUDENT_VIEWS": [1, 2, 3], "TEACHER_VIEWS": [0],
        "EMA_TEACHER": {"ENABLED": True, "MOMENTUM_START": 0.9, "MOMENTUM_END": 1.0},
    }}
    if ranks == 1:
        config["CHECKPOINT"].update({"CHECKPOINT_ITER_FREQUENCY": 2, "AUTO_RESUME": True})
    runs = run_vissl(tmp_path / "run", config, vissl_install)
    for run in runs:
        check_pmsn_run(run, labels, batch=8 // ranks)
        masked = trunk == "ssl_ext_masked_vit"
        assert run["masking_enabled"] == ({"student": True, "teacher": False} if masked else
                                          {"student": None, "teacher": None})
    if ranks == 1:
        check_resume_from_iteration_2(tmp_path / "run", config, vissl_install, runs[0])
    # Ranks stay in lockstep: DDP averaged the prototypes' gradients through the model, and every
    # rank's teacher started from rank 0's student.
    for other in runs[1:]:
        for k, step in enumerate(other["steps"]):
            for name in ("student", "teacher", "loss_parameters"):
                for key, value in step[name].items():
                    torch.testing.assert_close(value, runs[0]["steps"][k][name][key], rtol=0, atol=0)
    # The K classes hold for the global batch: the union of the ranks' shares.
    for k in range(len(runs[0]["steps"])):
        global_targets = torch.cat([run["steps"][k]["target"].view(4, -1)[0] for run in runs])
        classes, counts = global_targets.unique(return_counts=True)
        assert len(classes) == 2 and counts.tolist() == [4, 4]


def check_pmsn_run(run, labels, batch):
    steps = run["steps"]
    assert len(steps) == run["max_iteration"] == 3  # 24 images, global batches of 8, one epoch

    # Loss-owned prototypes: registered in the model, trained by VISSL's optimizer, without weight decay.
    assert "ssl_ext_loss_parameters.prototypes" in run["model_parameter_names"]
    (group,) = run["loss_parameter_groups"]["prototypes"]
    assert steps[-1]["weight_decay_by_group"][group] == 0.0
    assert max(steps[-1]["weight_decay_by_group"]) == pytest.approx(0.01)  # the model's own groups keep theirs
    start, end = run["loss_parameters_start"]["prototypes"], steps[-1]["loss_parameters"]["prototypes"]
    assert start.shape == (8, 16) and (end - start).abs().max() > 1e-4

    # EMA teacher: starts as the student, then t_k = m_k t_(k-1) + (1 - m_k) s_k with m linear 0.9 -> 1.0.
    teacher = {name: value.clone() for name, value in run["student_start"].items()}
    for k, step in enumerate(steps):
        momentum = 0.9 + 0.1 * k / run["max_iteration"]
        for name in teacher:
            teacher[name] = momentum * teacher[name] + (1 - momentum) * step["student"][name]
            torch.testing.assert_close(step["teacher"][name], teacher[name], rtol=1e-5, atol=1e-6)
    assert any((steps[-1]["teacher"][n] - steps[-1]["student"][n]).abs().max() > 1e-5 for n in teacher)
    assert {"loss", "ce", "kl_prior", "entropy_pbar"} <= set(steps[0]["terms"])
    assert all(np.isfinite(step["loss"]) for step in steps)
    assert [t["ema_momentum"] for t in run["terms_file"]] == pytest.approx([0.9, 0.9 + 0.1 / 3, 0.9 + 0.2 / 3])

    # What VISSL fed this rank (4 crops x its images, crop-major): the same images in every crop, with
    # the dataset's labels; the class-imbalanced sampler's K = 2 classes over the global batch are
    # checked by the caller (on one rank the local batch is the global batch).
    for step in steps:
        data_idx, target = step["data_idx"].view(4, batch), step["target"].view(4, batch)
        assert (data_idx == data_idx[0]).all() and (target == target[0]).all()
        assert torch.equal(target[0], torch.as_tensor(labels[data_idx[0].numpy()]))
        assert len(target[0].unique()) <= 2


def test_adapter_checks_in_a_vissl_process(vissl_install):
    """checks_in_vissl_process.py: view layouts (view-major, image-major, per crop), pairing, every registered
    loss through the adapter, the teacher's heads and masking, error messages."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(vissl_install), str(REPO)]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).with_name("checks_in_vissl_process.py")),
         "-q", "-p", "no:cacheprovider", "-W", "ignore::UserWarning"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "no tests ran" not in result.stdout


def check_resume_from_iteration_2(run_dir: Path, config: dict, vissl_install: Path, first: dict):
    """VISSL resumes from its iteration-2 checkpoint: model, prototypes and teacher come back (the latter two
    from the loss state), and the ssl_ext sampler continues at the third batch. (VISSL does not restore its
    augmentation RNG, so the resumed step's crops, hence its loss, differ from the uninterrupted run's.)"""
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "model_iteration2.torch").exists()
    for name in ("model_final_checkpoint_phase0.torch", "checkpoint.torch"):
        (checkpoints / name).unlink()
    (resumed,) = run_vissl(run_dir, config, vissl_install)
    assert [step["iteration"] for step in resumed["steps"]] == [2]
    saved = first["steps"][1]
    torch.testing.assert_close(resumed["loss_parameters_start"]["prototypes"], saved["loss_parameters"]["prototypes"],
                               rtol=0, atol=0)
    for name, value in saved["student"].items():
        torch.testing.assert_close(resumed["student_start"][name], value, rtol=0, atol=0)
    assert torch.equal(resumed["steps"][0]["data_idx"], first["steps"][2]["data_idx"])
    # The teacher continued from the checkpoint (not re-copied from the student): same EMA as without the stop.
    for name in saved["teacher"]:
        momentum = 0.9 + 0.1 * 2 / 3
        expected = momentum * saved["teacher"][name] + (1 - momentum) * resumed["steps"][0]["student"][name]
        torch.testing.assert_close(resumed["steps"][0]["teacher"][name], expected, rtol=1e-5, atol=1e-6)
