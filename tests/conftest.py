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


@pytest.fixture
def code_payload(tmp_path):
    """``(payload, marker)``: an object whose unpickling creates the file ``marker``, as a hostile
    checkpoint's pickle would run any code; ``marker.exists()`` tells whether it ran."""
    marker = tmp_path / "payload_ran"

    class _Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    return _Payload(), marker
