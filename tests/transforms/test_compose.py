"""OneThreadCompose / one_thread: preprocessing on one intra-op thread, the process's count restored after."""

from __future__ import annotations

import threading

import pytest
import torch
from monai.transforms import Lambda

from segdino_monai.transforms import OneThreadCompose, one_thread


def test_the_steps_run_on_one_thread_and_the_count_comes_back():
    torch.set_num_threads(2)
    seen = []
    compose = OneThreadCompose([Lambda(lambda x: seen.append(torch.get_num_threads()) or x + 1)])
    assert compose(1) == 2
    assert seen == [1] and torch.get_num_threads() == 2


def test_the_count_comes_back_after_an_error_and_when_nested():
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="boom"), one_thread():
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1  # the outer block still holds it
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_threads_that_overlap_each_run_on_one_thread():
    """torch's count is per Python thread under OpenMP: each overlapping caller gets one, the main thread keeps its."""
    torch.set_num_threads(2)
    inside, release = threading.Barrier(3), threading.Event()
    counts = []

    def work() -> None:
        with one_thread():
            inside.wait(timeout=10)
            release.wait(timeout=10)
            counts.append(torch.get_num_threads())

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=10)  # both are inside
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert counts == [1, 1] and torch.get_num_threads() == 2
