"""Parameter sweeps (``pmld.sweep``, ``pmld sweep``).

The reuse of per-night work must not change a single number: every combination's
events and indices equal those of a plain ``pmld.analyze`` with the same parameters,
and its agreement equals ``event_agreement`` against the reference LMs scored by the
same rules. Nights are short simulated ones (with a gap, NaN samples, two ankles and
reference sleep/wake and apnea annotations, so that every branch of the pipeline runs).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from functools import cache

import numpy as np
import pandas as pd
import pytest

from pmld.detect import PREPROCESSING_PARAMS, DetectionParams, activity_signal, resting_floor
from pmld.errors import UsageError
from pmld.evaluate import event_agreement, score_reference
from pmld.io.raw import write_raw
from pmld.night import Night, Sensor, make_annotations
from pmld.pipeline import analyze
from pmld.score import SCORED_COLUMNS, rules_preset, score_leg_movements
from pmld.simulate import simulate_night, truth_table
from pmld.sweep import (
    ROW_METRICS,
    PreparedNight,
    SweepNight,
    evaluate_combination,
    load_nights,
    plan_sweep,
    rank_combinations,
    read_sweep_metadata,
    run_sweep,
)

PMLD = [sys.executable, "-m", "pmld.cli"]


def reference_lms(night: Night) -> pd.DataFrame:
    """The simulator's leg movements (sleep and wake) as a reference would list them."""
    truth = truth_table(night)
    truth = truth[truth["kind"] != "posture"]
    return truth[["onset_s", "offset_s", "side"]].reset_index(drop=True)


@cache
def one_ankle() -> Night:
    """30 min, one ankle, with the simulator's wake spans and an apnea as reference
    annotations (so sleep time and the respiratory pass are exercised)."""
    night = simulate_night("severe", hours=0.5, seed=31, fs_hz=50.0)
    wake = night.annotation("wake")
    night.add_annotations(
        make_annotations(wake["onset_s"], wake["duration_s"], "wake", source="reference")
    )
    night.add_annotations(make_annotations([600.0], [20.0], "apnea", source="reference"))
    return night


@cache
def two_ankles_with_gap() -> Night:
    """30 min, two ankles, both losing data around 1200-1230 s (the left one longer) so
    that the night is two islands with PLM series in each; NaN samples on the left."""
    night = simulate_night("bilateral", hours=0.5, seed=38, fs_hz=50.0)
    sensors = []
    for sensor, (lo_s, hi_s) in zip(night.sensors, [(1200, 1240), (1195, 1230)], strict=True):
        fs = sensor.fs_hz
        first, stop = int(lo_s * fs), int(hi_s * fs)
        acc = np.concatenate([sensor.acc_g[:first], sensor.acc_g[stop:]])
        if sensor.side == "left":
            acc[int(1000 * fs) : int(1000 * fs) + 7] = np.nan
        gaps = pd.DataFrame({"sample_index": [first], "missing_samples": [stop - first]})
        sensors.append(
            Sensor(acc, fs, sensor.start_utc, side=sensor.side, gaps=gaps, device=sensor.device)
        )
    return Night(sensors, timezone=night.timezone, annotations=night.annotations)


NIGHTS = {"one_ankle": one_ankle, "two_ankles_with_gap": two_ankles_with_gap}

# Each changes a different stage: the activity signal (smooth_s, floor_percentile), the
# thresholds (onset_min_g, offset_min_g), the shape and posture rules, the scoring rules
# and the analysis window.
COMBINATIONS = [
    {},
    {"onset_min_g": 0.01, "offset_min_g": 0.004, "posture_angle_deg": 3.0},
    {"smooth_s": 0.5, "floor_percentile": 10.0, "min_imi_s": 5},
    {"shape_window_s": 0.0, "min_duration_s": 1.0, "break_gap_s": 60.0},
    {"merge_gap_s": 1.0, "lights_off_s": 120.0, "lights_on_s": 1500.0, "max_lm_s": 10.0},
]


def assert_indices_equal(mine: dict, theirs: dict) -> None:
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(mine[key]), key
        else:
            assert mine[key] == value, key


def split(params: dict):
    objects = plan_sweep({}, "wasm2016", params).combinations[0]
    return objects.detection, objects.rules, objects.window


@pytest.mark.parametrize("which", sorted(NIGHTS))
def test_prepared_night_gives_exactly_what_analyze_gives(which):
    night = NIGHTS[which]()
    prepared = PreparedNight(night)  # one preparation for every combination
    for params in COMBINATIONS:
        expected = analyze(night, "wasm2016", **params)
        detection, rules, window = split(params)
        full = prepared.scores(detection, rules, window)
        pd.testing.assert_frame_equal(full.events, expected.events, check_exact=True)
        pd.testing.assert_frame_equal(
            full.monolateral.reset_index(drop=True), expected.monolateral, check_exact=True
        )
        assert_indices_equal(full.indices, expected.indices)
        assert full.window_s == (
            expected.night_info["window_start_s"], expected.night_info["window_stop_s"]
        )
        lean = prepared.scores(detection, rules, window, lean=True)
        pd.testing.assert_frame_equal(
            lean.events, expected.events[list(SCORED_COLUMNS)], check_exact=True
        )
        assert_indices_equal(lean.indices, expected.indices)
        assert len(expected.events) > 20  # the comparison is not between empty tables


def test_a_sweep_row_is_analyze_plus_event_agreement():
    nights = [
        SweepNight(name, NIGHTS[name](), reference_lms(NIGHTS[name]())) for name in NIGHTS
    ]
    grid = {"onset_min_g": [0.01, 0.015], "smooth_s": [0.3, 0.5], "min_imi_s": [5, 10]}
    plan = plan_sweep(grid, "wasm2016", {"posture_angle_deg": 4.0})
    result = run_sweep(nights, plan, tolerance_s=0.5)
    table = result.table
    assert len(table) == 8 * 2
    for combination in plan.combinations[::3]:
        params = {**combination.values, "posture_angle_deg": 4.0}
        for sweep_night in nights:
            row = table[
                (table["combination"] == combination.index)
                & (table["night"] == sweep_night.name)
            ].iloc[0]
            expected = analyze(sweep_night.night, "wasm2016", **params)
            start = expected.night_info["window_start_s"]
            stop = expected.night_info["window_stop_s"]
            ref = sweep_night.reference_lms
            ref = ref[(ref["onset_s"] >= start) & (ref["onset_s"] < stop)]
            rules = rules_preset("wasm2016", min_imi_s=params["min_imi_s"])
            scored_ref = score_leg_movements(ref, rules)
            agreement = event_agreement(scored_ref, expected.events, tolerance_s=0.5)
            for name in ("n_detected", "n_reference", "matched", "sensitivity", "ppv", "f1"):
                assert row[name] == getattr(agreement, name), name
            assert row["onset_error_abs_median_s"] == agreement.onset_error_abs_median_s
            hours = expected.indices["analyzed_hours"]
            assert row["analyzed_hours"] == hours
            assert row["pmld_plm_index"] == expected.indices["plm_index"]
            assert row["reference_plm_index"] == scored_ref["plm"].sum() / hours
            assert row["plm_index_difference"] == (
                row["pmld_plm_index"] - row["reference_plm_index"]
            )


def test_the_activity_signal_is_computed_once_per_preprocessing_value(monkeypatch):
    import pmld.pipeline

    calls = []

    def counting(*args, **kwargs):
        calls.append(args[2])
        return activity_signal(*args, **kwargs)

    monkeypatch.setattr(pmld.pipeline, "activity_signal", counting)
    night = one_ankle()
    grid = {
        "onset_min_g": [0.01, 0.015, 0.02],
        "smooth_s": [0.3, 0.5],
        "offset_hold_s": [0.5, 1.0],
        "min_imi_s": [5, 10],
    }
    plan = plan_sweep(grid)
    assert plan.preprocessing_groups == 2
    result = run_sweep([SweepNight("a", night, reference_lms(night))], plan)
    assert len(result.table) == 24
    assert len(calls) == 2  # one stretch, two values of smooth_s
    assert sorted(p.smooth_s for p in calls) == [0.3, 0.5]


def same_value(mine, theirs) -> bool:
    if isinstance(theirs, float) and np.isnan(theirs):
        return bool(np.isnan(mine))
    return mine == theirs


def test_the_reference_is_scored_once_per_rules_and_window(monkeypatch):
    import pmld.sweep

    calls = []

    def counting(reference, rules, *, window_s):
        calls.append((rules, window_s))
        return score_reference(reference, rules, window_s=window_s)

    monkeypatch.setattr(pmld.sweep, "score_reference", counting)
    night = one_ankle()
    ref = reference_lms(night)
    grid = {"onset_min_g": [0.01, 0.015], "min_imi_s": [5, 10], "lights_on_s": [1500.0, 1700.0]}
    plan = plan_sweep(grid)
    result = run_sweep([SweepNight("a", night, ref)], plan)
    assert len(calls) == 4 and len(set(calls)) == 4  # 2 rules x 2 windows, 8 combinations
    # the same rows as scoring the reference in every combination
    prepared = PreparedNight(night)
    for combination in plan.combinations:
        expected = evaluate_combination(prepared, combination, ref)
        row = result.table[result.table["combination"] == combination.index].iloc[0]
        for name in ROW_METRICS:
            assert same_value(row[name], expected[name]), name
    assert len(calls) == 4


def test_no_other_detection_parameter_changes_the_activity_or_the_floor():
    acc = one_ankle().sensor.acc_g[:60000]
    base = DetectionParams()
    reference = activity_signal(acc, 50.0, base)
    floor = resting_floor(reference.activity_g, base)
    for f in dataclasses.fields(DetectionParams):
        if f.name in PREPROCESSING_PARAMS:
            continue
        values = {**base.to_dict(), f.name: getattr(base, f.name) * 1.5 + 0.01}
        if f.name.startswith("offset_"):  # keep the offset threshold under the onset one
            values.update(onset_ratio=10.0, onset_min_g=0.1)
        other = DetectionParams(**values)
        activity = activity_signal(acc, 50.0, other)
        np.testing.assert_array_equal(activity.activity_g, reference.activity_g)
        np.testing.assert_array_equal(activity.orientation, reference.orientation)
        assert resting_floor(activity.activity_g, other) == floor


# -- the grid ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "grid, params, words",
    [
        ({"onset_ration": [3, 4]}, {}, ["unknown parameter 'onset_ration'", "onset_ratio"]),
        ({"onset_ratio": [3]}, {"onset_min_gg": 0.1}, ["--set", "onset_min_g"]),
        ({"zzz": [1]}, {}, ["'zzz'", "pmld params"]),
        ({"onset_ratio": [3]}, {"onset_ratio": 4}, ["both fixed (--set) and swept"]),
        ({"onset_ratio": []}, {}, ["no values"]),
        ({"onset_ratio": [3, 4, 3]}, {}, ["3 twice"]),
        ({"min_imi_s": [5, -1]}, {}, ["min_imi_s=-1", "must be positive"]),
        ({"min_imi_s": [5, 95]}, {}, ["min_imi_s=95", "max_imi_s"]),
        ({"onset_ratio": [3, 4], "offset_ratio": [2, 9]}, {}, ["offset_ratio=9", "offset"]),
        ({"min_series_count": [3, 2.5]}, {}, ["min_series_count=2.5", "integer"]),
        ({"bilateral_mode": ["wasm", "both"]}, {}, ["bilateral_mode='both'", "one of"]),
        ({"onset_ratio": ["high"]}, {}, ["onset_ratio='high'", "must be a number"]),
        ({"floor_percentile": [20, 100]}, {}, ["floor_percentile=100", "(0, 100)"]),
    ],
)
def test_bad_grids_fail_in_one_line_before_any_work(grid, params, words):
    with pytest.raises(UsageError) as caught:
        plan_sweep(grid, "wasm2016", params)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unknown_preset_fails():
    with pytest.raises(UsageError, match="aasm"):
        plan_sweep({"onset_ratio": [3]}, "wasm2020")


def test_combinations_invalid_only_together_are_skipped_and_listed():
    plan = plan_sweep({"onset_ratio": [2, 4], "offset_ratio": [1.5, 3]})
    assert [c.values for c in plan.combinations] == [
        {"onset_ratio": 2.0, "offset_ratio": 1.5},
        {"onset_ratio": 4.0, "offset_ratio": 1.5},
        {"onset_ratio": 4.0, "offset_ratio": 3.0},
    ]
    assert [c.index for c in plan.combinations] == [0, 1, 2]
    assert len(plan.skipped) == 1
    assert plan.skipped[0][0] == {"onset_ratio": 2, "offset_ratio": 3}
    assert "offset threshold" in plan.skipped[0][1]


def test_values_are_canonical_and_fixed_values_apply_to_every_combination():
    plan = plan_sweep({"min_imi_s": [5, 10], "max_lm_s": [None, 10]}, "aasm", {"onset_min_g": 0.02})
    assert plan.grid == {"min_imi_s": (5.0, 10.0), "max_lm_s": (None, 10.0)}
    assert plan.fixed == {"onset_min_g": 0.02}
    for c in plan.combinations:
        assert c.detection.onset_min_g == 0.02
        assert c.rules.bilateral_mode == "aasm"  # from the preset
        assert c.rules.min_imi_s == c.values["min_imi_s"]
    assert plan.preprocessing_groups == 1


def test_parse_grid():
    from pmld.cli_sweep import parse_grid

    assert parse_grid(["onset_ratio=3,4.5", "bilateral_mode=wasm,aasm", "max_lm_s=none,10"]) == {
        "onset_ratio": [3, 4.5],
        "bilateral_mode": ["wasm", "aasm"],
        "max_lm_s": [None, 10],
    }
    for bad, word in [
        ("onset_ratio", "NAME=V1,V2"),
        ("=3", "NAME=V1,V2"),
        ("onset_ratio=3,,4", "empty value"),
        ("onset_ratio=", "empty value"),
    ]:
        with pytest.raises(UsageError, match=word):
            parse_grid([bad])
    with pytest.raises(UsageError, match="twice"):
        parse_grid(["onset_ratio=3", "onset_ratio=4"])


# -- the tables ----------------------------------------------------------------------------------
def test_tidy_table_has_one_row_per_combination_and_night():
    nights = [SweepNight("b", one_ankle(), reference_lms(one_ankle()))]
    night2 = simulate_night("moderate", hours=0.25, seed=33, fs_hz=50.0)
    nights.append(SweepNight("a", night2, reference_lms(night2)))
    plan = plan_sweep({"offset_min_g": [0.004, 0.006], "min_duration_s": [0.5, 1.0]}, "aasm",
                      {"min_imi_s": 6})
    result = run_sweep(nights, plan)
    table = result.table
    assert list(table.columns) == [
        "combination", "night", "rules", "min_imi_s", "offset_min_g", "min_duration_s",
        *ROW_METRICS,
    ]
    assert len(table) == 4 * 2
    assert table["night"].tolist() == ["b", "a"] * 4  # nights in the order given
    assert table["combination"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert (table["rules"] == "aasm").all() and (table["min_imi_s"] == 6.0).all()
    assert table["offset_min_g"].tolist() == [0.004] * 4 + [0.006] * 4
    assert table[["n_detected", "n_reference", "matched"]].dtypes.map(
        pd.api.types.is_integer_dtype
    ).all()
    assert (table["f1"] > 0.5).all()
    assert list(result.timings["night"]) == ["b", "a"]
    assert (result.timings["combinations_s"] > 0).all()
    ranked = result.ranked("f1")
    assert len(ranked) == 4 and ranked["nights"].eq(2).all()


def synthetic_table(f1, plm_error, matched, n_reference, n_detected):
    """A tidy table of 3 combinations x 2 nights with given metrics (row-major)."""
    rows = []
    for i in range(6):
        rows.append({
            "combination": i // 2, "night": "ab"[i % 2], "onset_min_g": [0.01, 0.02, 0.03][i // 2],
            **{name: 0.0 for name in ROW_METRICS},
            "f1": f1[i], "plm_index_abs_error": plm_error[i], "plm_index_difference": plm_error[i],
            "matched": matched[i], "n_reference": n_reference[i], "n_detected": n_detected[i],
        })
    return pd.DataFrame(rows)


def test_ranking_by_a_metric_in_its_direction_with_ties_in_grid_order():
    plan = plan_sweep({"onset_min_g": [0.01, 0.02, 0.03]})
    table = synthetic_table(
        f1=[0.8, 0.9, 0.95, 0.95, 0.8, 0.9],
        plm_error=[1.0, 3.0, np.nan, np.nan, 0.5, 0.5],
        matched=[8, 90, 19, 1, 8, 90],
        n_reference=[10, 100, 20, 1, 10, 100],
        n_detected=[10, 100, 20, 1, 10, 100],
    )
    by_f1 = rank_combinations(table, plan, "f1")
    assert by_f1["combination"].tolist() == [1, 0, 2]  # 0 and 2 tie at 0.85: grid order
    assert by_f1["rank"].tolist() == [1, 2, 3]
    assert by_f1["f1_mean"].tolist() == pytest.approx([0.95, 0.85, 0.85])
    assert by_f1["onset_min_g"].tolist() == [0.02, 0.01, 0.03]
    by_error = rank_combinations(table, plan, "plm_index_abs_error")
    assert by_error["combination"].tolist() == [2, 0, 1]  # lower first, NaN last
    pooled = rank_combinations(table, plan, "f1_pooled").set_index("combination")
    assert pooled.loc[1, "f1_pooled"] == pytest.approx(2 * 20 / 42)
    assert pooled.loc[0, "f1_pooled"] == pytest.approx(2 * 98 / 220)
    assert rank_combinations(table, plan, "f1_median")["combination"].tolist() == [1, 0, 2]
    with pytest.raises(UsageError, match="unknown metric 'f2'.*f1_pooled"):
        rank_combinations(table, plan, "f2")


def test_pyarrow_missing_is_one_line(monkeypatch, tmp_path):
    from pmld.sweep import check_output

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(UsageError, match=r'pip install "pmld\[research\]"'):
        check_output(tmp_path / "sweep.parquet")
    check_output(tmp_path / "sweep.csv")  # CSV needs no pyarrow
    with pytest.raises(UsageError, match=".parquet or .csv"):
        check_output(tmp_path / "sweep.xlsx")
    with pytest.raises(UsageError, match="does not exist"):
        check_output(tmp_path / "no" / "sweep.csv")


# -- the command ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two 20 min nights and their references as BIDS events.tsv."""
    folder = tmp_path_factory.mktemp("sweep")
    refs = folder / "refs"
    refs.mkdir()
    for name, scenario, seed in (("n1", "severe", 41), ("n2", "moderate", 42)):
        night = simulate_night(scenario, hours=1 / 3, seed=seed, fs_hz=50.0)
        write_raw(night, folder / f"{name}.h5")
        lms = reference_lms(night)
        pd.DataFrame({
            "onset": lms["onset_s"], "duration": lms["offset_s"] - lms["onset_s"],
            "trial_type": "LM", "side": lms["side"],
        }).to_csv(refs / f"{name}_events.tsv", sep="\t", index=False, float_format="%.3f")
    return folder


def run(*args, cwd):
    return subprocess.run([*PMLD, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_writes_parquet_and_csv_tables_that_agree(files):
    grid = ["--grid", "onset_min_g=0.01,0.02", "--grid", "min_imi_s=5,10"]
    done = run("sweep", "n1.h5", "n2.h5", "--reference", "refs", *grid,
               "--set", "posture_angle_deg=4", "--metric", "plm_index_abs_error", "--top", "2",
               "-o", "out.parquet", cwd=files)
    assert done.returncode == 0, done.stderr
    assert "best 2 of 4 combinations by plm_index_abs_error_mean" in done.stdout
    assert "wrote out.parquet and out.best.parquet" in done.stdout
    table = pd.read_parquet(files / "out.parquet")
    assert len(table) == 8 and set(table["night"]) == {"n1", "n2"}
    assert list(table.columns[:6]) == [
        "combination", "night", "rules", "posture_angle_deg", "onset_min_g", "min_imi_s"
    ]
    best = pd.read_parquet(files / "out.best.parquet")
    assert best["rank"].tolist() == [1, 2, 3, 4]
    errors = best["plm_index_abs_error_mean"].to_numpy()
    assert (np.diff(errors) >= 0).all()
    meta = read_sweep_metadata(files / "out.parquet")
    assert meta["grid"] == {"onset_min_g": [0.01, 0.02], "min_imi_s": [5.0, 10.0]}
    assert meta["fixed"] == {"posture_angle_deg": 4.0} and meta["metric"] == "plm_index_abs_error"
    assert [n["night"] for n in meta["nights"]] == ["n1", "n2"]
    assert all(n["sha256"].startswith("sha256:") for n in meta["nights"])
    assert len(meta["timings"]) == 2

    # the same sweep in two worker processes, as CSV
    done = run("sweep", "n1.h5", "n2.h5", "--reference", "refs", *grid,
               "--set", "posture_angle_deg=4", "--jobs", "2", "-o", "out.csv", cwd=files)
    assert done.returncode == 0, done.stderr
    from_csv = pd.read_csv(files / "out.csv")
    pd.testing.assert_frame_equal(
        from_csv[["combination", "night", "n_detected", "matched"]],
        table[["combination", "night", "n_detected", "matched"]], check_dtype=False,
    )
    np.testing.assert_allclose(from_csv["f1"], table["f1"], rtol=1e-5)
    assert len(pd.read_csv(files / "out.best.csv")) == 4


@pytest.mark.parametrize(
    "args, words",
    [
        (["--grid", "onset_ration=3,4"], ["unknown parameter 'onset_ration'", "onset_ratio"]),
        (["--grid", "min_imi_s=5,-2"], ["min_imi_s=-2"]),
        (["--grid", "onset_ratio=3", "--metric", "f2"], ["unknown metric 'f2'"]),
        (["--grid", "onset_ratio=3", "--set", "min_imi=5"], ["--set", "min_imi_s"]),
        (["--grid", "onset_ratio3"], ["--grid takes NAME=V1,V2"]),
        (["--grid", "onset_ratio=3", "--reference", "late"], ["does not overlap the night"]),
        (["--grid", "onset_ratio=3", "--reference", "none"], ["no reference file for night n1"]),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(files, args, words, capsys, monkeypatch):
    from pmld.cli import main

    late = files / "late"
    late.mkdir(exist_ok=True)
    (files / "none").mkdir(exist_ok=True)
    for name in ("n1", "n2"):  # a reference 10 h after the night
        (late / f"{name}.tsv").write_text("onset\tduration\ttrial_type\n36000\t1\tLM\n")
    if "--reference" not in args:
        args = [*args, "--reference", "refs"]
    monkeypatch.chdir(files)
    code = main(["sweep", "n1.h5", "n2.h5", *args, "-o", "bad.parquet"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("pmld: "), err
    for word in words:
        assert word in lines[0]
    assert not (files / "bad.parquet").exists()


def test_cli_reads_references_with_the_options_of_pmld_evaluate(files, capsys, monkeypatch):
    """--offset, --reference-start, --map and --ignore-unknown reach the reference reader
    as in pmld evaluate: references on another clock with their own labels give the same
    table as the plain ones."""
    from pmld.cli import main

    other = files / "other"
    other.mkdir(exist_ok=True)
    for name in ("n1", "n2"):  # 30 s late, LMs labelled Kick, and a label pmld does not know
        table = pd.read_csv(files / "refs" / f"{name}_events.tsv", sep="\t")
        table["onset"] = table["onset"] + 30.0
        table["trial_type"] = "Kick"
        extra = pd.DataFrame(
            {"onset": [40.0], "duration": [1.0], "trial_type": ["Unicorn"], "side": ["left"]}
        )
        pd.concat([table, extra]).to_csv(
            other / f"{name}_events.tsv", sep="\t", index=False, float_format="%.3f"
        )
    monkeypatch.chdir(files)
    sweep = ["sweep", "n1.h5", "n2.h5", "--grid", "onset_min_g=0.01,0.02"]
    options = ["--reference", "other", "--map", "Kick=lm", "--ignore-unknown"]
    assert main([*sweep, "--reference", "refs", "-o", "plain.csv"]) == 0
    assert main([*sweep, *options, "--offset", "-30", "-o", "offset.csv"]) == 0
    start = "2026-01-05T22:29:30+00:00"  # the nights start at 22:30:00
    assert main([*sweep, *options, "--reference-start", start, "-o", "start.csv"]) == 0
    capsys.readouterr()
    plain = pd.read_csv(files / "plain.csv")
    counts = ["n_detected", "n_reference", "matched"]
    for name in ("offset.csv", "start.csv"):
        table = pd.read_csv(files / name)
        pd.testing.assert_frame_equal(table[counts], plain[counts])
        np.testing.assert_allclose(table[list(ROW_METRICS)], plain[list(ROW_METRICS)],
                                   rtol=1e-5, atol=1e-3)
    assert (plain["n_reference"] >= 10).all()

    # the same through the Python API
    plan = plan_sweep({"onset_min_g": [0.01]})
    mine = load_nights([files / "n1.h5"], files / "other", plan=plan, reference_options={
        "offset_s": -30.0, "label_map": {"Kick": "lm"}, "on_unknown": "ignore",
    })
    theirs = load_nights([files / "n1.h5"], files / "refs", plan=plan)
    np.testing.assert_allclose(
        mine[0].reference_lms[["onset_s", "offset_s"]],
        theirs[0].reference_lms[["onset_s", "offset_s"]],
        atol=2e-3,
    )

    # without the options, or with bad ones: one line, exit 2, nothing written
    for args, words in [
        (["--reference", "other"], ["Kick", "--map", "--ignore-unknown"]),
        ([*options, "--map", "Kick"], ["--map takes LABEL=PMLD_LABEL"]),
        ([*options, "--offset", "nan"], ["--offset must be a finite number"]),
        ([*options, "--reference-start", "yesterday"], ["yesterday"]),
    ]:
        code = main([*sweep, *args, "-o", "bad.csv"])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("pmld: "), err
        for word in words:
            assert word in lines[0]
        assert not (files / "bad.csv").exists()


def test_cli_usage_error_in_a_real_process(files):
    done = run("sweep", "n1.h5", "--reference", "refs", "--grid", "onset_ration=3",
               "-o", "bad.csv", cwd=files)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "pmld: unknown parameter 'onset_ration' in --grid; did you mean onset_ratio, "
        "offset_ratio, onset_min_g?"
    ]
