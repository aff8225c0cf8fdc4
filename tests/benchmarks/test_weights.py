"""MODEL.WEIGHTS_INIT: ssl_ext checkpoints (student/teacher), plain and wrapped state dicts, errors naming keys."""
import copy

import pytest
import torch
from omegaconf import OmegaConf

import registry
from ssl_ext.engine.model import SSLModel, make_teacher
from ssl_ext.engine.weights import WeightsInitError, load_weights_file, load_weights_init, strip_wrapper_prefixes

# Small instances of every built-in trunk (timm-style: one round trip per registered name).
TRUNK_SPECS = {
    "small_cnn": {"widths": [4], "out_dim": 8},
    "resnet": {"depth": 18, "cifar_stem": True},
    "vit": {"preset": "custom", "img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2},
}


def build(name, seed):
    torch.manual_seed(seed)
    return registry.build_trunk({"NAME": name, "PARAMS": dict(TRUNK_SPECS[name])})


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def assert_differs(a, b):
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()) if x.is_floating_point())


def ssl_checkpoint(trunk):
    student = SSLModel(trunk, [torch.nn.Linear(trunk.out_dim, 4)])
    teacher = make_teacher(student)
    with torch.no_grad():  # the EMA teacher differs from the student after training
        for p in teacher.parameters():
            p.add_(0.5)
    return student, teacher, {
        "model": student.state_dict(), "teacher": teacher.state_dict(), "loss": {}, "epoch": 3, "iteration": 30,
    }


def weights_cfg(path, source="student", skip=()):
    return OmegaConf.create({"PARAMS_FILE": str(path), "SOURCE": source, "SKIP_LAYERS": list(skip)})


def test_registered_trunks_are_all_covered():
    assert set(registry.TRUNKS.names()) >= set(TRUNK_SPECS), "a trunk lost its registration"


@pytest.mark.parametrize("name", sorted(TRUNK_SPECS))
@pytest.mark.parametrize("source", ["student", "teacher"])
def test_ssl_checkpoint_student_or_teacher_into_a_trunk(tmp_path, name, source):
    student, teacher, state = ssl_checkpoint(build(name, seed=0))
    torch.save(state, tmp_path / "ckpt.torch")
    fresh = build(name, seed=1)
    assert_differs(fresh, student.trunk)
    assert load_weights_init(fresh, weights_cfg(tmp_path / "ckpt.torch", source))
    assert_same_state(fresh, (student if source == "student" else teacher).trunk)


@pytest.mark.parametrize(
    "prefix", ["", "module.", "trunk.", "backbone.", "encoder.", "module.backbone.", "module.trunk._feature_blocks."]
)
def test_plain_state_dict_with_wrapper_prefixes(tmp_path, prefix):
    source = build("small_cnn", seed=0)
    torch.save({prefix + k: v for k, v in source.state_dict().items()}, tmp_path / "plain.pth")
    fresh = build("small_cnn", seed=1)
    load_weights_file(fresh, str(tmp_path / "plain.pth"))
    assert_same_state(fresh, source)


def test_nested_state_dict_and_vissl_layout(tmp_path):
    source = build("small_cnn", seed=0)
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}, "epoch": 1}, tmp_path / "a.pth")
    vissl = {"classy_state_dict": {"base_model": {"model": {
        "trunk": {"_feature_blocks." + k: v for k, v in source.state_dict().items()},
        "heads": {"0.clf.0.weight": torch.zeros(3, 8)},
    }}}}
    torch.save(vissl, tmp_path / "vissl.torch")
    for path in ("a.pth", "vissl.torch"):
        fresh = build("small_cnn", seed=1)
        unused = load_weights_file(fresh, str(tmp_path / path))
        assert_same_state(fresh, source)
    assert unused == ["heads.0.clf.0.weight"]


def test_full_model_from_trunk_only_keys_and_back(tmp_path):
    trunk = build("small_cnn", seed=0)
    student, _, state = ssl_checkpoint(trunk)
    torch.save(state, tmp_path / "ckpt.torch")
    target = copy.deepcopy(student)
    for p in target.parameters():
        p.data.zero_()
    load_weights_file(target, str(tmp_path / "ckpt.torch"))
    assert_same_state(target, student)


def test_shape_mismatch_names_both_keys(tmp_path):
    torch.save(build("small_cnn", seed=0).state_dict(), tmp_path / "w.pth")
    wider = registry.build_trunk({"NAME": "small_cnn", "PARAMS": {"widths": [4], "out_dim": 16}})
    with pytest.raises(WeightsInitError) as err:
        load_weights_file(wider, str(tmp_path / "w.pth"))
    message = str(err.value)
    assert "shape mismatch" in message and "stages.1.0.weight (8, 4, 3, 3) -> stages.1.0.weight (16, 4, 3, 3)" in message
    assert "w.pth" in message


def test_missing_keys_and_missing_teacher_are_explained(tmp_path):
    deeper = registry.build_trunk({"NAME": "small_cnn", "PARAMS": {"widths": [4, 8], "out_dim": 8}})
    torch.save(build("small_cnn", seed=0).state_dict(), tmp_path / "w.pth")
    with pytest.raises(WeightsInitError, match=r"have no value in the checkpoint: \['stages.2"):
        load_weights_file(deeper, str(tmp_path / "w.pth"))
    student = SSLModel(build("small_cnn", seed=0), [])
    torch.save({"model": student.state_dict(), "iteration": 1}, tmp_path / "no_teacher.torch")
    with pytest.raises(WeightsInitError, match="SOURCE=student"):
        load_weights_file(build("small_cnn", seed=1), str(tmp_path / "no_teacher.torch"), source="teacher")
    with pytest.raises(WeightsInitError, match="does not exist"):
        load_weights_file(build("small_cnn", seed=1), str(tmp_path / "nope.torch"))
    (tmp_path / "broken.torch").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsInitError, match="could not be read"):
        load_weights_file(build("small_cnn", seed=1), str(tmp_path / "broken.torch"))


def test_skip_layers_leaves_them_missing(tmp_path):
    source = build("small_cnn", seed=0)
    torch.save({"trunk." + k: v for k, v in source.state_dict().items()}, tmp_path / "w.pth")
    with pytest.raises(WeightsInitError, match="stages.1"):
        load_weights_file(build("small_cnn", seed=1), str(tmp_path / "w.pth"), skip_layers=["stages.1"])


def test_empty_params_file_means_random_init():
    trunk = build("small_cnn", seed=0)
    before = copy.deepcopy(trunk)
    assert load_weights_init(trunk, weights_cfg("")) is False
    assert_same_state(trunk, before)


def test_prefix_stripping_is_repeated_and_keeps_bare_names():
    assert strip_wrapper_prefixes("module.trunk._feature_blocks.conv1.weight") == "conv1.weight"
    assert strip_wrapper_prefixes("trunk.") == "trunk."
    assert strip_wrapper_prefixes("heads.0.weight") == "heads.0.weight"
