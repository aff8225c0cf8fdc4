"""Which GPU a worker process takes (before its process group and engine start).

Regression (found for the GPU check, issue 17): ``run_worker`` never set the CUDA device, so on a
node with several GPUs the evaluation engines, which use ``torch.cuda.current_device()``, put every
local rank on GPU 0 (and nccl refuses two ranks on one GPU).
"""
import pytest

from ssl_ext.launch.worker import local_cuda_index


@pytest.mark.parametrize("wanted", ["cuda", "auto"])
def test_local_ranks_spread_over_the_visible_gpus(wanted):
    assert [local_cuda_index(wanted, rank, device_count=4) for rank in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_an_explicit_gpu_is_kept_and_the_cpu_takes_none():
    assert local_cuda_index("cuda:2", local_rank=0, device_count=4) == 2
    assert local_cuda_index("cpu", local_rank=1, device_count=4) is None
    assert local_cuda_index("auto", local_rank=1, device_count=0) is None
