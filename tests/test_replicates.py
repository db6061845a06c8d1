"""Replicates (seeds) pooled into one frame, and the two-level bootstrap that pooled item ids get."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factacq import fits, metrics
from factacq.analyze import compare_decay, gather_pooled
from factacq.errors import FactacqError
from factacq.params import Params
from factacq.replicates import SEP, clusters_of, pool_frames, pool_runs, pool_tables
from factacq.runlog import RunLogWriter, write_json_atomic


def _old_resampled_means(sums, sizes, n_boot, seed):
    """The item bootstrap as it was before clusters: the reference its numbers must keep."""
    idx = np.random.default_rng(seed).integers(0, len(sums), (n_boot, len(sums)))
    return sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)


# ---------------------------------------------------------------- pooling


def test_pool_frames_prefixes_item_ids_and_adds_the_replicate():
    a = pd.DataFrame({"item_id": ["x", "y", None], "value": [1.0, 2.0, 3.0]})
    b = pd.DataFrame({"item_id": [7, 8], "value": [4.0, 5.0]})  # numeric ids, as read from a CSV
    pooled = pool_frames({"s0": a, "s1": b})
    assert pooled["item_id"].tolist()[:2] == ["s0::x", "s0::y"] and pd.isna(pooled["item_id"][2])
    assert pooled["item_id"].tolist()[3:] == ["s1::7", "s1::8"]
    assert pooled["replicate"].tolist() == ["s0"] * 3 + ["s1"] * 2
    assert pooled["value"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert a["item_id"].tolist()[:2] == ["x", "y"]  # the inputs are not changed
    one = pool_frames({"only": a})  # one replicate is prefixed too
    assert one["item_id"].tolist()[:2] == ["only::x", "only::y"]
    assert set(one["replicate"]) == {"only"}


def test_pool_frames_refuses_ids_or_names_with_the_separator():
    with pytest.raises(FactacqError, match=r"replicate 's1': item_id 'a::b' already contains '::'"):
        pool_frames({"s0": pd.DataFrame({"item_id": ["a"]}),
                     "s1": pd.DataFrame({"item_id": ["c", f"a{SEP}b"]})})
    with pytest.raises(FactacqError, match="must not contain"):
        pool_frames({f"s{SEP}0": pd.DataFrame({"item_id": ["a"]})})
    with pytest.raises(FactacqError, match="no `item_id` column"):
        pool_frames({"s0": pd.DataFrame({"value": [1.0]})})


def test_clusters_of_reads_the_replicate_of_pooled_ids_only():
    labels = clusters_of(np.array(["b::1", "a::1", "b::2", "c::x::y"], dtype=object))
    assert labels.tolist() == [1, 0, 1, 2] and labels.dtype.kind == "i"
    assert clusters_of(pd.Index(["a::1", "a::2"])).tolist() == [0, 0]
    assert clusters_of(["a::1", "plain"]) is None  # not every id is pooled
    assert clusters_of(["x", "y"]) is None and clusters_of([]) is None
    assert clusters_of(np.array([1, 2])) is None


def _write_table(run_dir, name, table):
    (run_dir / "tables").mkdir(parents=True, exist_ok=True)
    table.to_csv(run_dir / "tables" / f"{name}.csv", index=False)


def test_pool_runs_and_pool_tables_name_replicates_by_their_folder(tmp_path):
    log = pd.DataFrame([
        {"run_id": "r", "record": "probe", "step": 0, "global_step": 0, "item_id": "i0",
         "scenario": "once", "kind": "memorization", "probe_index": 0, "logprob": -3.0},
        {"run_id": "r", "record": "train", "step": 1, "global_step": 1, "loss": 4.0}])
    dirs = [tmp_path / "c_seed0", tmp_path / "c_seed1"]
    for d in dirs:
        RunLogWriter(d).append(log)
        _write_table(d, "effectivity", pd.DataFrame({"item_id": ["i0", "i1"], "effectivity": [1, 2]}))
    runs = pool_runs(dirs)
    assert runs["item_id"].tolist()[0::2] == ["c_seed0::i0", "c_seed1::i0"]
    assert runs["item_id"][1::2].isna().all()  # train records have no item
    assert runs["replicate"].tolist() == ["c_seed0"] * 2 + ["c_seed1"] * 2
    table = pool_tables([str(d) for d in dirs], "effectivity")
    assert table["item_id"].tolist() == ["c_seed0::i0", "c_seed0::i1", "c_seed1::i0", "c_seed1::i1"]
    with pytest.raises(FactacqError, match="table not found"):
        pool_tables(dirs, "fits")
    with pytest.raises(FactacqError, match="same name"):
        pool_tables([dirs[0], tmp_path / "elsewhere" / "c_seed0"], "effectivity")


def test_control_adjustment_of_a_pooled_log_uses_each_replicate_own_control():
    def log(drift):
        return pd.DataFrame([{"record": "probe", "step": 5, "item_id": item, "scenario": scenario,
                              "kind": "memorization", "probe_index": 0, "logprob": value + drift}
                             for item, scenario, value in (("q", "once", -2.0), ("c", "control", -4.0))])

    pooled = pool_frames({"s0": log(0.0), "s1": log(10.0)})
    adjusted = metrics.control_adjusted(pooled).set_index("item_id")
    assert adjusted.loc[["s0::q", "s1::q"], "logprob_adj"].tolist() == [2.0, 2.0]
    assert adjusted.loc[["s0::q", "s1::q"], "control_n"].tolist() == [1, 1]


# ---------------------------------------------------------------- the two-level bootstrap


def test_resampled_means_without_clusters_is_the_item_bootstrap_as_before():
    rng = np.random.default_rng(11)
    sums, sizes = rng.normal(size=37), rng.integers(1, 5, 37).astype(float)
    np.testing.assert_array_equal(metrics.resampled_means(sums, sizes, 300, 5),
                                  _old_resampled_means(sums, sizes, 300, 5))
    grid_sums, grid_sizes = rng.normal(size=(37, 6)), rng.integers(0, 3, (37, 6)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(metrics.resampled_means(grid_sums, grid_sizes, 50, 2),
                                      _old_resampled_means(grid_sums, grid_sizes, 50, 2))
    # and what bootstrap_mean draws for a plain (unpooled) frame is that reference
    frame = pd.DataFrame({"item_id": np.repeat([f"i{k:02d}" for k in range(20)], 3),
                          "value": rng.normal(size=60)})
    per = frame.groupby("item_id")["value"].agg(["sum", "size"])
    reference = _old_resampled_means(per["sum"].to_numpy(), per["size"].to_numpy(), 400, 9)
    lo, hi = np.quantile(reference, [(1 - 0.95) / 2, (1 + 0.95) / 2])
    stats = metrics.bootstrap_mean(frame, "value", n_boot=400, seed=9)
    assert (stats["lo"], stats["hi"]) == (float(lo), float(hi))


def test_resampled_means_with_clusters_draws_clusters_then_rows():
    sums = np.array([1.0, 1.0, 100.0, 100.0])  # two clusters of two rows
    sizes = np.ones(4)
    draws = metrics.resampled_means(sums, sizes, 400, 0, clusters=np.array([0, 0, 1, 1]))
    # a resample has two clusters' worth of rows: both from one cluster, or one from each
    assert set(np.round(draws, 6)) == {1.0, 50.5, 100.0}
    assert metrics.resampled_means(sums[:, None], sizes[:, None], 7, 0,
                                   clusters=np.array([0, 0, 1, 1])).shape == (7, 1)
    with pytest.raises(FactacqError, match="3 cluster labels for 4 rows"):
        metrics.resampled_means(sums, sizes, 5, 0, clusters=np.array([0, 0, 1]))


def _seeds_frame(offsets, n_items=40, seed=0, identical=False):
    """Per replicate, n_items items of 3 values: noise (the same for every replicate when
    `identical`) around the replicate's offset; item ids pooled as factacq.replicates names them."""
    rng = np.random.default_rng(seed)
    frames = {}
    for k, offset in enumerate(offsets):
        noise = np.random.default_rng(seed).normal(size=n_items * 3) if identical else rng.normal(
            size=n_items * 3)
        frames[f"s{k}"] = pd.DataFrame({"item_id": np.repeat([f"i{j}" for j in range(n_items)], 3),
                                        "value": offset + noise})
    return pool_frames(frames)


def _items_only(pooled):
    """The same rows with item ids that no longer name a replicate: the items-only bootstrap."""
    return pooled.assign(item_id=pooled["item_id"].str.replace(SEP, "_", regex=False))


def _width(stats):
    return stats["hi"] - stats["lo"]


def test_cluster_bootstrap_covers_the_spread_between_seeds():
    pooled = _seeds_frame([0.0, 4.0, -3.0, 6.0, 1.0])
    clustered = metrics.bootstrap_mean(pooled, "value", n_boot=2000, seed=1)
    items = metrics.bootstrap_mean(_items_only(pooled), "value", n_boot=2000, seed=1)
    assert clustered["mean"] == pytest.approx(items["mean"])
    assert clustered["n_items"] == items["n_items"] == 200
    assert _width(clustered) > 3 * _width(items), (clustered, items)


def test_cluster_bootstrap_of_identical_seeds_is_about_the_items_only_one():
    pooled = _seeds_frame([0.0] * 5, identical=True)
    clustered = metrics.bootstrap_mean(pooled, "value", n_boot=4000, seed=1)
    items = metrics.bootstrap_mean(_items_only(pooled), "value", n_boot=4000, seed=1)
    assert 0.85 < _width(clustered) / _width(items) < 1.15, (clustered, items)


def _one_run_points(a, seed=0, n_items=30):
    """R = 1 − a·log10 t + noise at t = 1, 10, 100, 1000: one run's per-probe points."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"item_id": f"i{j}", "scenario": "once", "kind": "memorization",
                          "probe_index": 0, "t": t,
                          "retainability": 1 - a * np.log10(t) + rng.normal(0, 0.05)}
                         for j in range(n_items) for t in (1, 10, 100, 1000)])


def _retention_points(slopes, seed=0):
    """One run's points per slope (a replicate with its own a), pooled."""
    return pool_frames({f"s{k}": _one_run_points(a, seed * 100 + k) for k, a in enumerate(slopes)})


def test_retention_samples_and_compare_conditions_resample_seeds():
    pooled = _retention_points([0.05, 0.25, 0.1, 0.3])
    clustered = fits.retention_samples(pooled, n_boot=1000, seed=0)
    items = fits.retention_samples(_items_only(pooled), n_boot=1000, seed=0)
    assert clustered["a"] == pytest.approx(items["a"]) and clustered["n_items"] == 120
    assert np.std(clustered["a_samples"]) > 3 * np.std(items["a_samples"])
    # the condition comparison draws its intervals the same way
    other = _retention_points([0.05, 0.25, 0.1, 0.3], seed=1)
    wide = fits.compare_conditions({"p": pooled, "q": other}, n_boot=500)
    narrow = fits.compare_conditions({"p": _items_only(pooled), "q": _items_only(other)}, n_boot=500)
    assert (wide["difference_hi"] - wide["difference_lo"]).iloc[0] > 3 * (
        narrow["difference_hi"] - narrow["difference_lo"]).iloc[0]


# ---------------------------------------------------------------- analyze helpers


def _fake_run(run_dir, points):
    params = Params(name=run_dir.name, analysis={"bootstrap": 300})
    write_json_atomic(run_dir / "run.json", {"params": params.model_dump(mode="json")})
    _write_table(run_dir, "retainability_points",
                 points.assign(measure="logprob", adjustment="raw"))
    return run_dir


def test_compare_decay_pools_the_replicates_of_each_condition(tmp_path):
    reps = {"a": [_fake_run(tmp_path / f"a_seed{s}", _one_run_points(slope, s))
                  for s, slope in enumerate((0.05, 0.3))],
            "b": [_fake_run(tmp_path / f"b_seed{s}", _one_run_points(slope, 10 + s))
                  for s, slope in enumerate((0.1, 0.35))]}
    runs = {m: dirs[0] for m, dirs in reps.items()}
    compare = {"ab": ["a", "b"]}
    first = compare_decay(runs, compare)
    # one run folder per condition: exactly the intervals of the runs as they are
    pd.testing.assert_frame_equal(compare_decay(runs, compare, replicates={m: [d] for m, d in runs.items()}),
                                  first, check_exact=True)
    pooled = compare_decay(runs, compare, replicates=reps)
    points = gather_pooled(reps, "retainability_points")
    assert set(points["condition"]) == {"a", "b"} and points["item_id"].str.contains(SEP).all()
    expected = fits.retention_samples(points[points["condition"] == "b"], n_boot=0)["a"]
    assert pooled["value"].iloc[0] == pytest.approx(expected)
    assert pooled["value"].iloc[0] != pytest.approx(first["value"].iloc[0])
    def spread(table):
        return (table["value_hi"] - table["value_lo"]).iloc[0]

    assert spread(pooled) > 3 * spread(first)
    with pytest.raises(FactacqError, match=r"no run folders for condition\(s\) \['b'\]"):
        compare_decay(runs, compare, replicates={"b": []})
