"""This process's place among the processes of a ``torchrun`` run (torch.distributed), without needing one."""

from __future__ import annotations

__all__ = ["rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (under ``torchrun``), else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
