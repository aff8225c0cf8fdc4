"""progress_logger: the record of every logged step (loss, lr, throughput, ETA) and its plain log line."""


def test_each_logged_step_has_loss_lr_throughput_and_eta(tiny_run):
    logged = [r for r in tiny_run.records if "loss" in r]
    for record in logged:
        assert {"loss", "lr", "weight_decay", "images_per_sec", "eta_sec"} <= set(record)
        assert record["images_per_sec"] > 0 and record["eta_sec"] >= 0
    assert logged[-1]["eta_sec"] == 0  # the last update: nothing left


def test_without_a_terminal_it_logs_one_plain_line_per_record(tiny_run):
    lines = [line for line in tiny_run.log_lines if line.startswith("epoch ")]
    assert [line.split()[3] for line in lines] == ["3/8", "6/8", "8/8"]
    assert all("loss=" in line and "img/s" in line for line in lines)
