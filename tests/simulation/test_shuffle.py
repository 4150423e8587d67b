"""Virtual sites' batches drawn all at once: train_local's epochs and batch sizes, and a
site's batches independent of the other sites sampled with it."""

from __future__ import annotations

import numpy as np

from medfl.data._partition import partition
from medfl.simulation._shuffle import shuffled_batches, splitmix64
from medfl.spec import QuantityPartition, Training
from medfl.training._local import local_steps

CUT = partition(QuantityPartition(alpha=0.5, minSize=3), np.zeros(500, np.float32), 20, seed=1)
CFG = Training(batchSize=16, localEpochs=2.3)


def batch_sizes(n: int, steps: int, batch: int) -> list[int]:
    """train_local's: full batches, the last of each epoch short."""
    sizes: list[int] = []
    while len(sizes) < steps:
        sizes += [batch] * (n // batch) + ([n % batch] if n % batch else [])
    return sizes[:steps]


def test_each_site_gets_train_locals_steps_batch_sizes_and_whole_epochs() -> None:
    sites = np.arange(CUT.count)
    rows, real, steps = shuffled_batches(CUT, sites, CFG, seed=0, server_round=1)
    assert len(set(CUT.sizes.tolist())) > 5  # ragged sites: padding is exercised
    for k in sites:
        n = int(CUT.sizes[k])
        assert steps[k] == local_steps(n, CFG)
        assert real[k].sum(1)[: steps[k]].tolist() == batch_sizes(n, int(steps[k]), 16)
        assert not real[k][steps[k] :].any()
        first_epoch = rows[k][: -(-n // 16)][real[k][: -(-n // 16)]]
        assert sorted(first_epoch.tolist()) == sorted(CUT.site_rows(k).tolist())


def test_a_sites_batches_do_not_depend_on_the_others_sampled_but_on_the_round() -> None:
    rows, real, _ = shuffled_batches(CUT, np.arange(CUT.count), CFG, seed=0, server_round=1)
    few = np.array([3, 7, 11])
    some, mask, _ = shuffled_batches(CUT, few, CFG, seed=0, server_round=1)
    later, later_mask, _ = shuffled_batches(CUT, few, CFG, seed=0, server_round=2)
    for j, k in enumerate(few):
        assert np.array_equal(some[j][mask[j]], rows[k][real[k]])
        assert not np.array_equal(later[j][later_mask[j]], rows[k][real[k]])


def test_splitmix64_is_the_reference_generator() -> None:
    # SplitMix64 from state 0: its first outputs (Vigna's reference implementation)
    state = np.arange(1, 4, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        out = splitmix64(state - np.uint64(0x9E3779B97F4A7C15))
    assert out.tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
