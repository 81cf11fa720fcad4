"""Seed-study summaries over probe.json reports (espnet2.eval.summary, bin/probe_summary)."""

from __future__ import annotations

import json

import pytest

from espnet2.bin import probe_summary
from espnet2.eval.summary import format_summary, read_runs, summarise


def _report(path, pre, rand, mfcc=0.6, name="ssl_x", extra_unselected=0.99):
    rows = [
        {"name": name, "layer": "weighted", "test_acc": extra_unselected, "selected": False},
        {"name": name, "layer": "1", "test_acc": pre, "selected": True},
        {"name": f"{name}_random_init", "layer": "0", "test_acc": rand, "selected": True},
        {"name": "mfcc39_meanstd", "layer": "0", "test_acc": mfcc, "selected": True},
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tasks": {"digit": {"results": rows}}}))
    return path


def test_gains_use_the_selected_probes_and_each_runs_own_random_init(tmp_path):
    paths = [_report(tmp_path / f"s{i}/probe.json", pre, rand)
             for i, (pre, rand) in enumerate([(0.88, 0.79), (0.87, 0.75), (0.86, 0.73)])]
    rows = read_runs(paths)
    assert [round(r.gain, 6) for r in rows] == [9.0, 12.0, 13.0]  # not the unselected 0.99
    s = summarise(rows, target_gain=10)
    assert s["mean_gain"] == pytest.approx(34 / 3) and s["min_gain"] == pytest.approx(9.0)
    assert s["std_gain"] == pytest.approx(2.0816660, rel=1e-6)
    assert s["below_target"] == [str(paths[0])] and s["target_met"] is False
    assert summarise(rows[1:], target_gain=10)["target_met"] is True


def test_a_run_not_above_a_baseline_misses_the_target(tmp_path):
    rows = read_runs([_report(tmp_path / "a.json", pre=0.70, rand=0.40, mfcc=0.75)])
    s = summarise(rows, target_gain=10)
    assert rows[0].gain == pytest.approx(30.0)
    assert s["below_baseline"] == [str(tmp_path / "a.json")] and s["target_met"] is False


def test_bad_reports_are_named(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"tasks": {"speaker": {"results": []}}}))
    with pytest.raises(ValueError, match=r"r.json: no 'digit' task .*--tasks digit"):
        read_runs([p])
    _report(p, 0.8, 0.7)
    rows = json.loads(p.read_text())
    rows["tasks"]["digit"]["results"] = rows["tasks"]["digit"]["results"][:2]  # no random init
    p.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="no pre-trained model with a random-init row"):
        read_runs([p])


def test_cli_exit_codes_and_outputs(tmp_path, capsys):
    good = [_report(tmp_path / f"g{i}.json", 0.9, 0.7) for i in range(2)]
    md, js = tmp_path / "out/summary.md", tmp_path / "out/summary.json"
    md.parent.mkdir()
    assert probe_summary.main([*map(str, good), "--target_gain", "10",
                               "--markdown", str(md), "--json", str(js)]) == 0
    assert "target gain >= +10.0 for every run and above every baseline: met" in md.read_text()
    assert json.loads(js.read_text())["per_run"][0]["gain"] == pytest.approx(20.0)
    bad = _report(tmp_path / "b.json", 0.75, 0.7)
    assert probe_summary.main([*map(str, good), str(bad), "--target_gain", "10"]) == 1
    assert "NOT met" in capsys.readouterr().out
    assert probe_summary.main([str(tmp_path / "missing.json")]) == 2
    assert "no such report" in capsys.readouterr().err


def test_gain_intervals_tell_noise_from_a_real_shortfall(tmp_path):
    def with_ci(path, pre, rand, ci):
        _report(path, pre, rand)
        rep = json.loads(path.read_text())
        rep["tasks"]["digit"]["paired_differences"] = {
            "ssl_x - ssl_x_random_init": {"overall": pre - rand, "ci95": ci}}
        path.write_text(json.dumps(rep))
        return path

    noisy = with_ci(tmp_path / "n.json", 0.88, 0.795, [0.060, 0.108])  # +8.5, CI reaches +10
    short = with_ci(tmp_path / "s.json", 0.85, 0.79, [0.040, 0.080])  # +6, CI below +10
    old = _report(tmp_path / "o.json", 0.85, 0.79)  # a report written before intervals
    rows = read_runs([noisy, short, old])
    assert rows[0].gain_ci == pytest.approx((6.0, 10.8)) and rows[2].gain_ci is None
    s = summarise(rows, target_gain=10)
    assert len(s["below_target"]) == 3
    assert s["clearly_below_target"] == [str(short)]
    text = format_summary(rows, s)
    assert "+8.5 [+6.0, +10.8]" in text
    assert f"below the target beyond test-set noise (whole 95% interval under +10.0): {short}" \
        in text


def test_compare_pairs_studies_by_seed_with_a_paired_t_interval(tmp_path):
    from espnet2.eval.summary import compare, format_comparison

    def study(tag, gains):  # random init 0.70 for every seed; gains in points
        return read_runs([_report(tmp_path / f"{tag}{s}.json", 0.70 + g / 100, 0.70,
                                  name=f"ssl_{tag}_seed{s}") for s, g in gains])

    variant = study("v", [(3, 12.0), (0, 10.0), (1, 11.0)])  # listed out of seed order
    base = study("b", [(0, 8.0), (1, 10.0), (3, 9.0), (7, 1.0)])  # an extra seed is ignored
    cmp = compare(variant, base)
    assert cmp["seeds"] == ["3", "0", "1"]
    assert cmp["diffs"] == pytest.approx([3.0, 2.0, 1.0])
    assert cmp["mean_diff"] == pytest.approx(2.0)
    half = 4.303 * 1.0 / 3 ** 0.5  # t_{0.975, 2} * s_d / sqrt(n), s_d = 1
    assert cmp["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert "[-0.5, +4.5]: no difference shown" in format_comparison(cmp)
    better = compare(study("w", [(0, 12.0), (1, 12.5), (3, 13.0)]), base)
    assert better["ci95"][0] > 0 and format_comparison(better).rstrip().endswith("better")
    with pytest.raises(ValueError, match=r"no run for seed\(s\) \['5'\]"):
        compare(study("x", [(5, 1.0)]), base)
    plain = read_runs([_report(tmp_path / "p.json", 0.8, 0.7)])  # no _seed suffix: by position
    assert compare(plain, plain)["ci95"] is None and compare(plain, plain)["mean_diff"] == 0
    with pytest.raises(ValueError, match="cannot pair 1 runs with 4"):
        compare(plain, base)


def test_cli_baseline_comparison(tmp_path, capsys):
    a = [_report(tmp_path / f"a{s}.json", 0.9, 0.7, name=f"ssl_a_seed{s}") for s in (0, 1)]
    b = [_report(tmp_path / f"b{s}.json", 0.8 + s / 100, 0.7, name=f"ssl_b_seed{s}")
         for s in (0, 1)]
    js = tmp_path / "s.json"
    assert probe_summary.main([*map(str, a), "--baseline", *map(str, b), "--json", str(js)]) == 0
    assert "paired by seed (2 pairs): gain difference mean +9.5" in capsys.readouterr().out
    assert json.loads(js.read_text())["vs_baseline"]["diffs"] == pytest.approx([10.0, 9.0])
    assert probe_summary.main([str(a[0]), "--baseline", str(tmp_path / "none.json")]) == 2
