"""Fixtures shared across test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread, as streaming runs (and far faster than two on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
