from __future__ import annotations

import pickle
import subprocess
import sys

from segdino_monai.utils.errors import InputError, input_error_message, interrupted


def _raise_chain():
    try:
        raise pickle.UnpicklingError(
            "Weights only load failed. Re-running `torch.load` with `weights_only` set to False"
        )
    except pickle.UnpicklingError as err:
        try:
            raise InputError("w.pth: not a weights file; pass Meta's .pth") from err
        except InputError as ours:
            raise RuntimeError("Failed to evaluate ConfigExpression") from ours


def test_our_message_wins_over_the_library_error_it_wraps():
    try:
        _raise_chain()
    except RuntimeError as err:
        message = input_error_message(err)
    assert message == "w.pth: not a weights file; pass Meta's .pth"


def test_path_errors_are_bad_input_and_bugs_are_not():
    try:
        open("/nonexistent/file.png")
    except FileNotFoundError as err:
        assert "/nonexistent/file.png" in input_error_message(err)
    assert input_error_message(KeyError("x")) is None
    assert input_error_message(TypeError("bug")) is None


def test_excepthook_gives_one_line_and_exit_2_for_bad_input_and_a_traceback_for_a_bug():
    code = "import segdino_monai.utils.errors as e; e.install_excepthook(); raise {}"
    bad = subprocess.run([sys.executable, "-c", code.format("e.InputError('spatial_size: use multiples of 16')")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == "ERROR spatial_size: use multiples of 16"
    bug = subprocess.run([sys.executable, "-c", code.format("TypeError('a bug')")], capture_output=True, text=True)
    assert bug.returncode == 1
    assert "Traceback" in bug.stderr and "TypeError: a bug" in bug.stderr


def test_input_error_from_a_dataloader_worker_is_found_in_the_reraised_text():
    from torch.utils.data import DataLoader, Dataset

    class Bad(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            try:
                raise InputError(f"/data/a{index}.png: unreadable")
            except InputError as err:
                raise RuntimeError("applying transform LoadImaged") from err

    try:
        next(iter(DataLoader(Bad(), num_workers=1)))
    except RuntimeError as err:
        assert "Traceback" in str(err) and err.__cause__ is None  # torch hands the main process a text, not the chain
        assert input_error_message(err) == "/data/a0.png: unreadable"
    else:
        raise AssertionError("the worker's error did not reach the main process")


def test_finish_worker_threads_waits_for_a_terminated_pool_s_busy_workers():
    import threading
    from multiprocessing.pool import ThreadPool

    from segdino_monai.utils.errors import finish_worker_threads

    release = threading.Event()  # the other workers stay busy until the test has seen them (no race on a loaded CPU)

    def item(index):
        if index == 0:
            raise InputError("a.png: unreadable")
        release.wait(timeout=30)  # another worker is still busy on its own item when the pool is terminated
        return index

    try:
        with ThreadPool(2) as pool:  # what MONAI's CacheDataset does: terminated, not joined, on the first error
            list(pool.imap(item, range(4)))
    except InputError:
        pass
    busy = [t for t in threading.enumerate() if t.name.endswith("(worker)") and t.is_alive()]
    assert busy, "the pool's workers should still be running (else this test proves nothing)"
    threading.Timer(0.3, release.set).start()  # they finish their item only after finish_worker_threads has begun
    finish_worker_threads()
    assert release.is_set() and not [t for t in busy if t.is_alive()]


CTRL_C_IN_A_SAVE = """
import sys, torch
from segdino_monai.utils.errors import install_excepthook
install_excepthook()


class Interrupting:  # a file whose write is where Ctrl-C lands, as in torch.save of a checkpoint
    def write(self, data):
        raise KeyboardInterrupt

    def flush(self):
        pass


try:
    torch.save({"w": torch.zeros(1000)}, Interrupting())
except BaseException as err:
    print("raised", type(err).__name__, "from", type(err.__context__).__name__, file=sys.stderr)
    raise RuntimeError("Failed to evaluate ConfigExpression") from err
"""


def test_ctrl_c_that_a_clean_up_turned_into_another_error_is_still_ctrl_c():
    try:
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")
    except RuntimeError as err:
        assert interrupted(err)
    assert not interrupted(RuntimeError("a bug")) and interrupted(KeyboardInterrupt())
    # through the excepthook of a bundle run: "Interrupted." and 130, no traceback
    result = subprocess.run([sys.executable, "-c", CTRL_C_IN_A_SAVE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stderr
    assert "Interrupted." in result.stderr and "Traceback" not in result.stderr
