"""tools/reproduce_hidden_prior.py end to end on the shortened plan (real Fashion-MNIST images, 1 epoch)."""
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import reproduce_hidden_prior as tool  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    if not os.path.exists(FASHION_MNIST):
        pytest.fail("Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist (tools/setup_env.sh does it as root)")
    out = tmp_path_factory.mktemp("hidden_prior")
    assert tool.main(["--plan", "study/smoke/hidden_prior", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_report_files_and_tables(smoke_study):
    out, _ = smoke_study
    report = (out / "report.md").read_text()
    assert "## 1. Sampler study" in report and "## 2. Prior study" in report
    assert "tools/reproduce_hidden_prior.py --plan study/smoke/hidden_prior" in report
    for row in ("| SimCLR |", "| MSN |", "| MAE |", "| SwAV |", "| PMSN (tau=0.5) |", "| prior-matching SwAV (tau=0.5) |",
                "random init (simclr trunk)", "random init (mae trunk)", "| raw pixels (no pretraining) |",
                "| raw pixels (floor, no pretraining) |", "balanced-train probe: head / medium / tail",
                "| method | linear class-balanced | linear class-imbalanced | drop | class-balanced − pixels |"):
        assert row in report, row
    assert "class orders [0, 1]" in report
    assert "linear drop (class-imbalanced)" in report and "linear tail" in report
    assert "prior-matching SwAV − SwAV = " in report and "PMSN − MSN = " in report
    for plot in ("sampler_study_linear", "sampler_study_cluster_sizes", "prior_study_linear",
                 "prior_study_prototype_usage", "prior_study_cluster_sizes"):
        path = out / f"{plot}.png"
        assert path.read_bytes()[:4] == b"\x89PNG", plot
        assert f"]({plot}.png)" in report
    assert (out / "plan.yaml").exists() and (out / "data" / "subset" / "subset.json").exists()


def test_every_run_was_trained_and_evaluated_as_planned(smoke_study):
    out, study = smoke_study
    runs = {r["key"]: r for r in study["runs"]}
    # MSN, SwAV and SimCLR share the study's CNN trunk, so one random-init floor serves them; MAE's ViT is another.
    prior = {f"prior/{name}/order{order}/seed0" for name in ("msn", "pmsn_tau0.5", "swav", "pswav_tau0.5", "random_init_msn",
                                                             "pixels") for order in (0, 1)}
    sampler = {f"sampler/{m}_{arm}/seed0" for m in ("simclr", "msn", "mae", "swav") for arm in ("balanced", "imbalanced")}
    floors = {f"sampler/{name}/seed0" for name in ("random_init_simclr", "random_init_mae", "pixels")}
    assert set(runs) == sampler | floors | prior
    for key, run in runs.items():
        linear = run["results"]["linear"]["rows"][0]
        assert 0.0 <= linear["top1"] <= 100.0, key
        expected = {"linear", "knn", "analysis"} | ({"linear_balanced"} if run["study"] == "prior" else set())
        assert expected == set(run["results"]), key
        if run["labels"]["method"] not in ("random_init", "pixels"):
            assert run["checkpoint"].endswith(".torch") and os.path.exists(os.path.join(run["run_dir"], "DONE")), key
        if run["study"] == "prior":
            assert {"head", "medium", "tail"} <= set(linear), key
    # The sampler arm reached the run: K classes per batch in the saved config.
    config = (out / "runs" / "sampler" / "simclr_imbalanced" / "seed0" / "train_config.yaml").read_text()
    assert "class_imbalanced" in config and "classes_per_batch: 1" in config
    # 40 (subset) x 10 classes; the long-tailed prior-study train set is smaller.
    assert sum(runs["sampler/simclr_balanced/seed0"]["results"]["analysis"]["details"]["layers"]
               .popitem()[1]["labels"]["sorted_sizes"]) == 400
    prior_sizes = runs["prior/msn/order0/seed0"]["results"]["analysis"]["details"]["layers"].popitem()[1]["labels"]["sorted_sizes"]
    assert prior_sizes[0] == 40 and prior_sizes[-1] == 4
    # The two class orders make different classes the head; the pixels floor reads 16x16 grey images.
    heads = {o: json.loads((out / "runs" / "prior" / "msn" / f"order{o}" / "seed0" / "class_histogram.json").read_text())
             ["long_tail"]["class_order"][0] for o in (0, 1)}
    assert heads[0] != heads[1]
    assert runs["prior/pixels/order0/seed0"]["results"]["linear"]["rows"][0]["layer"] == "pixels"
    # The balanced-train probe saw all 40 images of each class; its per-class counts cover the 20 val images per class.
    balanced = runs["prior/msn/order0/seed0"]["results"]["linear_balanced"]
    assert next(iter(balanced["per_class"].values()))["total"] == [20] * 10
    # PMSN's tau reached the loss: the prior it was trained against fits tau = 0.5; MSN's is uniform.
    pmsn = runs["prior/pmsn_tau0.5/order0/seed0"]["results"]["analysis"]["details"]["prototypes"]
    assert pmsn["prior"]["tau_mle"] == pytest.approx(0.5, abs=1e-6)
    msn = runs["prior/msn/order0/seed0"]["results"]["analysis"]["details"]["prototypes"]
    assert msn["prior"]["tau_mle"] == 0.0
    # The prior-matching SwAV run got the swept tau in its Sinkhorn marginals; the SwAV run kept equipartition.
    pswav_config = (out / "runs" / "prior" / "pswav_tau0.5" / "order0" / "seed0" / "train_config.yaml").read_text()
    assert "pswav_loss" in pswav_config and "tau: 0.5" in pswav_config
    assert "NAME: swav_loss" in (out / "runs" / "prior" / "swav" / "order0" / "seed0" / "train_config.yaml").read_text()
    summary = study["report"]["summary"]
    assert set(summary["sampler"]["methods"]) == {"simclr", "msn", "mae", "swav"}
    drop = summary["sampler"]["methods"]["simclr"]["drop"]["imbalanced"]["linear"]
    assert drop["per_seed"] == [pytest.approx(drop["drop"])]  # one seed: the drop is its only paired difference


def test_rerun_reuses_finished_runs(smoke_study, capsys):
    out, study = smoke_study
    assert tool.main(["--plan", "study/smoke/hidden_prior", "--out", str(out), "sampler_study.enabled=false",
                      "evaluation.random_init_baseline=false", "evaluation.pixels_baseline=false", "prior_study.class_orders=[1]"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert [r["key"] for r in again["runs"]] == ["prior/msn/order1/seed0", "prior/pmsn_tau0.5/order1/seed0",
                                                 "prior/swav/order1/seed0", "prior/pswav_tau0.5/order1/seed0"]
    before = {r["key"]: r for r in study["runs"]}
    for run in again["runs"]:
        assert run["checkpoint"] == before[run["key"]]["checkpoint"]
        assert run["results"]["linear"]["rows"] == before[run["key"]]["results"]["linear"]["rows"]


def test_rerun_with_an_edited_recipe_stops_instead_of_reporting_the_old_runs(smoke_study, capsys):
    out, _ = smoke_study
    report_before = (out / "report.md").read_text()
    capsys.readouterr()
    code = tool.main(["--plan", "study/smoke/hidden_prior", "--out", str(out), "sampler_study.enabled=false",
                      "evaluation.random_init_baseline=false", "evaluation.pixels_baseline=false", "prior_study.class_orders=[1]",
                      "config.OPTIMIZER.BASE_LR=0.123"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("error:") == 1
    assert "prior/msn/order1/seed0" in err and "OPTIMIZER.BASE_LR:" in err and "0.123" in err
    assert (out / "report.md").read_text() == report_before


def test_plan_errors_are_one_line(tmp_path, capsys):
    assert tool.main(["--plan", "study/smoke/hidden_prior", "--out", str(tmp_path), "sampler_study.epoch=2"]) == 2
    assert "Did you mean 'sampler_study.epochs'" in capsys.readouterr().err
    assert tool.main(["--plan", "study/nope"]) == 2
    assert "no such YAML file" in capsys.readouterr().err
    assert tool.main(["--plan", "study/smoke/hidden_prior", "--out", str(tmp_path), "prior_study.taus=[]"]) == 2
    assert "prior_study.taus" in capsys.readouterr().err


# cpu: 7 methods x 4 arms + 4 random-init trunks + pixels; per class order (3): MSN, 3 PMSN, SwAV, 3 prior-matching SwAV,
# 2 random-init trunks, pixels. full: 7 methods x 2 arms; MSN, 3 PMSN, SwAV, 3 prior-matching SwAV.
@pytest.mark.parametrize("plan, runs", [("study/cpu/hidden_prior", 74), ("study/full/hidden_prior_imagenet_inat18", 22)])
def test_dry_run_composes_every_config_of_the_shipped_plans(plan, runs, tmp_path, capsys):
    """Every run config of the CPU and the full (SLURM, ImageNet/iNat18) plans composes and validates."""
    assert tool.main(["--plan", plan, "--out", str(tmp_path), "--dry-run", "config.SLURM.PARTITION=gpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == runs
    assert all("config.SLURM.PARTITION=gpu" in line for line in lines)
    assert any("classes_per_batch: 1}" in line or "classes_per_batch: 8}" in line for line in lines)
    # PMSN and prior-matching SwAV (cpu: and prior-matching DINO), 3 taus each (cpu: x 3 class orders)
    assert sum("PARAMS: {tau:" in line for line in lines) == (27 if "cpu" in plan else 6)
    assert sum("pretrain/pswav" in line for line in lines) == (9 if "cpu" in plan else 3)
    assert sum("pretrain/pdino" in line for line in lines) == (9 if "cpu" in plan else 0)
    for method in ("mae", "data2vec", "swav", "dino"):
        assert any(line.startswith(f"sampler/{method}_") for line in lines), method
    assert not os.listdir(tmp_path)  # nothing was written
