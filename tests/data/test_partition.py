"""Partitioners: sizes, minimum sizes, a class running out, seeds, shards with replacement."""

from __future__ import annotations

import numpy as np
import pytest

from medfl.data._partition import label_mix, partition
from medfl.errors import SpecError
from medfl.spec import (
    ColumnPartition,
    DirichletPartition,
    IidPartition,
    QuantityPartition,
    ShardPartition,
)


def labels(n: int, positives: int) -> np.ndarray:
    y = np.zeros(n, dtype=np.float32)
    y[:positives] = 1
    return y


def every_row_once(cut, n: int) -> bool:
    return sorted(cut.rows.tolist()) == list(range(n))


def test_iid_deals_every_row_once_in_sizes_within_one() -> None:
    cut = partition(IidPartition(), labels(103, 40), 10, seed=1)
    assert cut.count == 10
    assert sorted(set(cut.sizes.tolist())) == [10, 11]
    assert every_row_once(cut, 103)
    assert cut.rows.dtype == np.int32 and cut.offsets.dtype == np.int64


def test_iid_with_more_sites_than_rows_names_the_field() -> None:
    with pytest.raises(SpecError) as err:
        partition(IidPartition(), labels(5, 2), 6, seed=0)
    assert "simulation.virtualSites.count: 6 sites with at least 1 row(s) each need 6 rows" in str(
        err.value
    )


def test_quantity_sizes_are_skewed_but_keep_the_minimum_and_every_row() -> None:
    cut = partition(QuantityPartition(alpha=0.3, minSize=4), labels(500, 200), 20, seed=3)
    assert cut.sizes.min() >= 4
    assert cut.sizes.sum() == 500
    assert cut.sizes.max() > 3 * np.median(cut.sizes)  # alpha 0.3: a few large sites
    assert every_row_once(cut, 500)


def test_dirichlet_skews_labels_more_at_small_alpha() -> None:
    y = labels(2000, 1000)
    spread = {}
    for alpha in (0.1, 100.0):
        cut = partition(DirichletPartition(alpha=alpha, minSize=1), y, 20, seed=5)
        sizes, positives = label_mix(cut, y)
        spread[alpha] = float(np.std(positives / sizes))
        assert every_row_once(cut, 2000)
    assert spread[0.1] > 0.3
    assert spread[100.0] < 0.05


def test_dirichlet_with_a_class_that_runs_out_ends_fills_the_minimum_and_says_so() -> None:
    # 3 positives for 50 sites and a minimum of 4 rows: redraws cannot reach it (alpha 0.05
    # gives most rows to a few sites), so the fallback fills the small sites; no NaN.
    y = labels(240, 3)
    cut = partition(DirichletPartition(alpha=0.05, minSize=4), y, 50, seed=0)
    assert cut.sizes.min() >= 4
    assert every_row_once(cut, 240)
    _, positives = label_mix(cut, y)
    assert positives.sum() == 3
    assert (positives > 0).sum() <= 3  # the class ran out: most sites have none
    assert len(cut.notes) == 1
    assert cut.notes[0].startswith("dirichlet: after 10 draws ")
    assert "row(s) moved to them from the largest sites" in cut.notes[0]


def test_dirichlet_minimum_beyond_the_pool_is_refused_before_drawing() -> None:
    with pytest.raises(SpecError) as err:
        partition(DirichletPartition(minSize=10), labels(50, 20), 6, seed=0)
    assert "6 sites with at least 10 row(s) each need 60 rows; the pool has 50" in str(err.value)


@pytest.mark.parametrize(
    "spec",
    [
        IidPartition(),
        DirichletPartition(alpha=0.5),
        QuantityPartition(),
        ShardPartition(shardSize=7),
    ],
    ids=lambda s: s.type,
)
def test_the_same_seed_gives_the_same_partition_and_another_seed_another(spec) -> None:
    y = labels(300, 120)
    first, again, other = (partition(spec, y, 12, seed=s) for s in (4, 4, 5))
    assert np.array_equal(first.rows, again.rows)
    assert np.array_equal(first.offsets, again.offsets)
    assert not np.array_equal(first.rows, other.rows)


def test_shards_draw_with_replacement_for_more_sites_than_rows() -> None:
    cut = partition(ShardPartition(shardSize=16), labels(30, 10), 1000, seed=2)
    assert cut.count == 1000
    assert set(cut.sizes.tolist()) == {16}
    assert cut.rows.min() >= 0 and cut.rows.max() < 30
    assert len(cut.rows) == 16_000  # more draws than rows: some rows repeat
    assert cut.nbytes == 16_000 * 4 + 1001 * 8
    assert cut.site_name(0) == "v000" and cut.site_name(999) == "v999"


def test_column_partition_is_one_site_per_level_named_by_it() -> None:
    values = np.array(["b", "a", "b", "c", "a", "b"], dtype=object)
    cut = partition(ColumnPartition(column="x"), labels(6, 2), None, seed=0, column=values)
    assert cut.names == ["a", "b", "c"]
    assert [cut.site_rows(i).tolist() for i in range(3)] == [[1, 4], [0, 2, 5], [3]]
