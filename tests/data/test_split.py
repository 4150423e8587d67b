"""Per-site train / validation / test splits: stratified and seeded, or predefined."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medfl.data import predefined_split, prepare_site, prepare_sites, stratified_split
from medfl.errors import DataError
from medfl.spec import Schema, Site, Split, parse_experiment
from medfl.training import SiteWorker
from tests.helpers import make_frames, make_sites, read_result

Y = np.array([0] * 50 + [1] * 30, dtype=np.float32)


def counts(y: np.ndarray, idx: np.ndarray) -> tuple[int, int]:
    return int((y[idx] == 0).sum()), int((y[idx] == 1).sum())


def test_stratified_split_cuts_each_class_in_proportion() -> None:
    split = stratified_split(Y, Split(validation=0.2, test=0.3), seed=1, site="a")
    assert counts(Y, split.test) == (15, 9)
    assert counts(Y, split.validation) == (10, 6)
    assert counts(Y, split.train) == (25, 15)
    every = np.concatenate([split.train, split.validation, split.test])
    assert sorted(every.tolist()) == list(range(80))  # a partition of the rows
    assert all(np.all(np.diff(part) > 0) for part in (split.train, split.validation, split.test))


def test_stratified_split_is_determined_by_seed_and_site() -> None:
    cfg = Split(validation=0.2, test=0.2)
    first = stratified_split(Y, cfg, seed=3, site="a")
    again = stratified_split(Y, cfg, seed=3, site="a")
    other_seed = stratified_split(Y, cfg, seed=4, site="a")
    other_site = stratified_split(Y, cfg, seed=3, site="b")
    assert np.array_equal(first.test, again.test)
    assert np.array_equal(first.validation, again.validation)
    assert not np.array_equal(first.test, other_seed.test)
    assert not np.array_equal(first.test, other_site.test)


def test_single_class_site_still_splits() -> None:
    y = np.ones(10, dtype=np.float32)
    split = stratified_split(y, Split(validation=0.2, test=0.2), seed=0, site="a")
    assert (len(split.train), len(split.validation), len(split.test)) == (6, 2, 2)


def test_predefined_split_takes_rows_by_label() -> None:
    labels = np.array(["train", "test", "train", "validation", "test"], dtype=object)
    split = predefined_split(labels)
    assert split.train.tolist() == [0, 2]
    assert split.validation.tolist() == [3]
    assert split.test.tolist() == [1, 4]


def test_split_column_assigns_the_rows_at_every_site(tmp_path) -> None:
    frames = make_frames()
    for frame in frames.values():
        n = len(frame)
        frame["fold"] = [
            "test" if i % 5 == 0 else "validation" if i % 5 == 1 else "train" for i in range(n)
        ]
    spec = make_sites(tmp_path, frames=frames, evaluation={"split": {"column": "fold"}})
    experiment = parse_experiment(spec)
    worker = SiteWorker(experiment, "site-b")
    worker.hello()
    tables = worker.split_tables()
    b = frames["site-b"]
    for part in ("train", "validation", "test"):
        expected = b[b["fold"] == part]
        assert tables[part][0]["age"].tolist() == expected["age"].astype(float).tolist()
        assert tables[part][1].tolist() == expected["outcome"].tolist()
    assert "fold" not in tables["train"][0].columns


def test_split_column_reaches_the_report_as_not_dropped(tmp_path, run_fast) -> None:
    frames = make_frames()
    for frame in frames.values():
        frame["fold"] = np.where(np.arange(len(frame)) % 4 == 0, "test", "train")
    outcome = run_fast(
        make_sites(tmp_path, frames=frames, evaluation={"split": {"column": "fold"}})
    )
    result = read_result(outcome.run_dir)
    assert result["sites"]["site-a"]["droppedColumns"] == []
    assert result["final"]["sites"]["site-a"]["numExamples"] == 50  # 200 rows, every 4th
    assert result["rounds"][0]["sites"]["site-a"]["validationExamples"] == 0


@pytest.mark.parametrize(
    ("fold", "fragment"),
    [
        (["train", "dev", "test", "train"], "found 1 other level(s) and 0 missing"),
        (["train", None, "test", "train"], "found 0 other level(s) and 1 missing"),
    ],
)
def test_bad_split_column_values_name_site_and_column(tmp_path, fold, fragment) -> None:
    frame = pd.DataFrame({"age": [1, 2, 3, 4], "outcome": [0, 1, 0, 1], "fold": fold})
    site = Site.model_validate(
        {"name": "ward", "data": {"source": "csv", "path": str(tmp_path / "w.csv")}}
    )
    frame.to_csv(tmp_path / "w.csv", index=False)
    schema = Schema.model_validate({"target": {"column": "outcome"}, "numeric": ["age"]})
    with pytest.raises(DataError) as exc:
        prepare_site(site, schema, "fold")
    assert (exc.value.site, exc.value.column) == ("ward", "fold")
    assert "split column 'fold' must hold only train/validation/test" in str(exc.value)
    assert fragment in str(exc.value)


def test_missing_split_column_is_named(tmp_path) -> None:
    spec = make_sites(tmp_path, evaluation={"split": {"column": "fold"}})
    with pytest.raises(DataError) as exc:
        prepare_sites(parse_experiment(spec))
    assert (exc.value.site, exc.value.column) == ("site-a", "fold")


def test_split_seed_holds_the_test_sets_while_the_training_seed_changes(tmp_path) -> None:
    from medfl.spec import parse_experiment
    from medfl.training import SiteWorker
    from tests.helpers import make_sites

    def test_rows(training_seed: int, split_seed: int | None) -> np.ndarray:
        spec = make_sites(
            tmp_path,
            training={"seed": training_seed},
            evaluation={"split": {"seed": split_seed}, "baselines": []},
        )
        worker = SiteWorker(parse_experiment(spec), "site-a")
        worker.hello()
        return worker.split_tables()["test"][0]["age"].to_numpy()

    assert np.array_equal(test_rows(1, 5), test_rows(2, 5))
    assert not np.array_equal(test_rows(1, None), test_rows(2, None))
