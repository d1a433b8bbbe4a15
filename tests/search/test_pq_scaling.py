import numpy as np
import pytest

from claspkit.bench import pq_scaling as bs


def _row(n, shares, recalls, ms, cores=2, code_bytes=48):
    grid = [{"nprobe": 2 ** i, "share": s, "recall@128": r, "recall@256": min(1.0, r + 0.02), "ms_1": m,
             "ms_all": m / 1.6} for i, (s, r, m) in enumerate(zip(shares, recalls, ms))]
    return {"segments": n, "cores": cores, "code_bytes": code_bytes, "grid": grid}


def test_needed_share_interpolates_in_log_space_between_the_points_around_the_target():
    row = _row(1_000_000, [0.01, 0.04], [0.90, 0.98], [1.0, 4.0])
    s = bs.needed_share(row, 0.94)
    assert s["share"] == pytest.approx(0.02) and s["ms_1"] == pytest.approx(2.0) and s["nprobe"] == pytest.approx(
        2 ** 0.5)
    assert bs.needed_share(row, 0.99) is None
    assert bs.needed_share(row, 0.5)["share"] == pytest.approx(0.01)     # reached at the first point


def test_projection_recovers_a_power_law_and_counts_cores():
    # needed share = 0.1 (n / 1M)^0.5, scanned at 0.5 ns per byte on one core, 1.6x on 2 cores
    rows = []
    for n in (1_000_000, 4_000_000):
        share = 0.1 * (n / 1e6) ** 0.5
        ms = share * n * 48 * 0.5e-6
        rows.append(_row(n, [share / 2, share, share * 2], [0.90, 0.96, 0.99], [ms / 2, ms, ms * 2]))
    p = bs.project(rows, 0.96, sizes=(16_000_000,))
    assert p["exponent"] == pytest.approx(0.5) and p["ns_per_byte"] == pytest.approx(0.5)
    assert p["efficiency"] == pytest.approx(0.8)
    big = p["sizes"][0]
    assert big["share"] == pytest.approx(0.4) and big["ms_1"] == pytest.approx(0.4 * 16e6 * 48 * 0.5e-6)
    assert big["cores_for_target"] == int(np.ceil(big["ms_1"] / bs.TARGET_MS / 0.8))
    assert p["fitted_on"] == [1_000_000, 4_000_000]
    assert bs.project(rows[:1], 0.96) is None
    small = _row(100_000, [0.001, 0.002], [0.90, 0.99], [0.1, 0.2])        # under a tenth of the largest: left out
    assert bs.project([small, *rows], 0.96)["exponent"] == pytest.approx(0.5)
    assert bs.project([small, rows[1]], 0.96) is None


def test_scan_scaling_measures_a_small_index_against_its_exact_neighbours():
    row = bs.scan_scaling(20_000, dim=32, queries=30, timed=3, cores=2, target=1.01)     # never reached
    grid = row["grid"]
    assert row["nlist"] == 282 and row["code_bytes"] == 4
    assert [g["nprobe"] for g in grid] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 282]
    assert all(0 < a["share"] < b["share"] for a, b in zip(grid, grid[1:])) and grid[-1]["share"] == 1.0
    assert all(0 <= g["recall@128"] <= g["recall@256"] <= 1 for g in grid)
    assert grid[-1]["recall@256"] > grid[0]["recall@256"] > 0
    assert all(g["ms_1"] > 0 and g["ms_all"] > 0 for g in grid)
    early = bs.scan_scaling(20_000, dim=32, queries=30, timed=3, cores=2, target=0.0)
    assert [g["nprobe"] for g in early["grid"]] == [1, 2]          # one step past the target, then stop


def test_main_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        bs.main(["--sizes", "ten"])
    with pytest.raises(SystemExit):
        bs.main(["--sizes", "1000"])
