"""Large-scale simulation: virtual sites cut from the experiment's sites' training rows,
trained as stacks (one batched computation per round), on CPU or CUDA."""

from medfl.simulation._pool import Pool, build_pool, choose_device, partition_csv
from medfl.simulation._rounds import CHUNK, BatchedRounds, SiteFigures, sample
from medfl.simulation._stack import StackUpdate, check_supported, forward, train_stack

__all__ = [
    "CHUNK",
    "BatchedRounds",
    "Pool",
    "SiteFigures",
    "StackUpdate",
    "build_pool",
    "check_supported",
    "choose_device",
    "forward",
    "partition_csv",
    "sample",
    "train_stack",
]
