import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Trainings in these tests use one intra-op thread: faster on small CPUs and comparable runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
