"""Unit tests of the benchmark harness's pure parts (bench/): no processes, no load."""

from __future__ import annotations

import copy
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import content, report, wrk
from bench.handler_only import build_frames, write_frames
from bench.raw_handler import responses

from takefive import wire

WRK_TEXT = """Running 1s test @ http://127.0.0.1:18080/hello
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   576.65us  460.85us   7.57ms   94.90%
    Req/Sec    18.88k     3.65k   23.45k    60.00%
  Latency Distribution
     50%  471.00us
     75%  604.00us
     90%  805.00us
     99%    2.74ms
  18706 requests in 1.00s, 2.96MB read
  Socket errors: connect 0, read 3, write 1, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:  18683.64
Transfer/sec:      2.96MB
"""

WRK_JSON = (
    'WRK_JSON {"duration_us":2000000,"requests":50000,"bytes":3105196,'
    '"errors":{"connect":1,"read":2,"write":3,"status":4,"timeout":5},'
    '"latency_us":{"min":175,"max":7565,"mean":576.65,"stdev":460.85,'
    '"p50":471,"p75":604,"p90":805,"p99":2740,"p999":6483}}'
)


# --------------------------------------------------------------------------- wrk output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("471.00us", 471e-6), ("2.74ms", 2.74e-3), ("1.00s", 1.0), ("2m", 120.0), ("1.5h", 5400.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert wrk.parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a wrk duration"):
        wrk.parse_duration("12 parsecs")


def test_parse_text_output() -> None:
    result = wrk.parse_output(WRK_TEXT)
    assert result.requests == 18706
    assert result.rps == pytest.approx(18683.64)
    assert result.duration_s == pytest.approx(1.0)
    assert result.p50_ms == pytest.approx(0.471)
    assert result.p99_ms == pytest.approx(2.74)
    assert result.mean_ms == pytest.approx(0.57665)
    assert result.max_ms == pytest.approx(7.57)
    assert result.non2xx == 12
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 1, "timeout": 7}
    assert result.total_socket_errors == 11


def test_parse_text_without_errors_lines() -> None:
    text = "\n".join(
        line
        for line in WRK_TEXT.splitlines()
        if "Socket errors" not in line and "Non-2xx" not in line
    )
    result = wrk.parse_output(text)
    assert result.non2xx == 0
    assert result.total_socket_errors == 0


def test_json_line_wins_over_text() -> None:
    result = wrk.parse_output(WRK_TEXT + WRK_JSON + "\n")
    assert result.requests == 50000
    assert result.duration_s == pytest.approx(2.0)
    assert result.rps == pytest.approx(25000.0)
    assert result.p50_ms == pytest.approx(0.471)
    assert result.p99_ms == pytest.approx(2.74)
    assert result.non2xx == 4
    assert result.socket_errors == {"connect": 1, "read": 2, "write": 3, "timeout": 5}
    data = result.to_json()
    assert data["socket_errors_total"] == 11
    json.dumps(data)


def test_unreadable_output_raises() -> None:
    with pytest.raises(wrk.WrkError, match="cannot read wrk output"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_lua_prints_every_field_the_parser_reads() -> None:
    lua = wrk.WRK_LUA.read_text()
    assert "function(summary, latency, requests)" in lua
    assert "response" not in lua.split("done")[0]  # no per-request Lua in wrk's hot loop
    for key in (
        "duration_us",
        "requests",
        "connect",
        "read",
        "write",
        "status",
        "timeout",
        "p50",
        "p99",
    ):
        assert f'"{key}"' in lua


# --------------------------------------------------------------------------- ratios, targets


def _result(
    route: str, level: int, rps: float, p50: float = 1.0, p99: float = 4.0
) -> dict[str, Any]:
    return {
        "route": route,
        "connections": level,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non2xx": 0,
        "socket_errors_total": 0,
        "processes": [
            {"name": "server", "pid": 1, "peak_rss_mb": 30.0, "cpu_pct": 95.0},
            {"name": "wrk", "pid": 2, "peak_rss_mb": 5.0, "cpu_pct": 40.0},
        ],
    }


def _stack(
    name: str, label: str, factor: float, routes: tuple[str, ...] = content.ROUTES
) -> dict[str, Any]:
    base = {"hello": 20000.0, "json": 18000.0, "page": 5000.0}
    return {
        "name": name,
        "label": label,
        "status": "ok",
        "description": "d",
        "packages": {"x": "1"},
        "results": [
            _result(r, c, base[r] * factor, 1.0 / factor, 4.0 / factor)
            for r in routes
            for c in (50, 200)
        ],
    }


def sample_data() -> dict[str, Any]:
    return {
        "started": "2026-11-27T10:00:00+00:00",
        "quick": False,
        "baseline": "uvicorn-starlette",
        "settings": {
            "warmup_s": 3,
            "duration_s": 10,
            "connections": [50, 200],
            "routes": list(content.ROUTES),
            "wrk_threads": 1,
        },
        "machine": {"nproc": 2, "cpu": "test cpu", "python": "3.11.7", "loadavg": [0.1, 0.2, 0.3]},
        "stacks": [
            _stack("uvicorn-starlette", "uvicorn + Starlette", 1.0),
            _stack("raw-m2", "raw pyzmq + Mongrel2", 2.0),
            _stack("takefive-m2-1", "takefive + Mongrel2, 1 handler", 1.5),
            _stack("takefive-gw-1", "takefive + gateway, 1 handler", 0.8),
            {
                "name": "granian-starlette",
                "label": "granian + Starlette",
                "status": "not available",
                "reason": "granian is not installed",
                "results": [],
            },
        ],
        "handler_only": {
            "messages": 1000,
            "feeder": "a C feeder",
            "ratio": 0.7,
            "raw": {"msgs_per_s": 100000.0, "handler_cpu_pct": 99.0},
            "takefive": {"msgs_per_s": 70000.0, "handler_cpu_pct": 98.0},
            "async_ratio": 0.55,
            "takefive_async": {"msgs_per_s": 55000.0, "handler_cpu_pct": 97.0},
        },
        "jobs": {
            "jobs": 50000,
            "window": 500,
            "repeat": 3,
            "chunk": 50,
            "raw_jobs_per_s": 150000,
            "takefive_jobs_per_s": 60000,
            "takefive_map_jobs_per_s": 120000,
            "raw_runs": [150000, 140000, 130000],
            "takefive_runs": [60000, 59000, 58000],
            "takefive_map_runs": [120000, 110000, 100000],
        },
    }


def test_ratios_are_relative_to_the_baseline_of_the_same_route_and_level() -> None:
    data = sample_data()
    report.compute_ratios(data)
    tf = report.find_stack(data, "takefive-m2-1")
    result = report.find_result(tf, "json", 200)
    assert result is not None
    assert result["ratio"]["rps"] == pytest.approx(1.5)
    assert result["ratio"]["p50"] == pytest.approx(1 / 1.5)
    assert result["ratio"]["p99"] == pytest.approx(1 / 1.5)
    base = report.find_result(report.find_stack(data, "uvicorn-starlette"), "hello", 50)
    assert base is not None and base["ratio"]["rps"] == pytest.approx(1.0)


def test_ratio_is_none_without_a_baseline_figure() -> None:
    data = sample_data()
    baseline = report.find_stack(data, "uvicorn-starlette")
    assert baseline is not None
    baseline["results"] = [r for r in baseline["results"] if r["route"] != "page"]
    baseline["results"][0]["rps"] = 0.0  # hello c=50 measured as nothing
    report.compute_ratios(data)
    tf = report.find_stack(data, "takefive-m2-1")
    assert report.find_result(tf, "page", 50)["ratio"] == {"rps": None, "p50": None, "p99": None}  # type: ignore[index]
    assert report.find_result(tf, "hello", 50)["ratio"]["rps"] is None  # type: ignore[index]
    assert report.find_result(tf, "hello", 200)["ratio"]["rps"] == pytest.approx(1.5)  # type: ignore[index]


def test_geomean() -> None:
    assert report.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert report.geomean([]) is None


def test_targets() -> None:
    data = sample_data()
    stack = report.find_stack(data, "takefive-m2-1")
    assert stack is not None
    report.find_result(stack, "page", 200)["rps"] = 5000.0 * 1.2  # type: ignore[index]
    soak = {"max_growth": 0.01, "max_growth_process": "handler1", "requests_done": 2_000_000}
    targets = {t["id"]: t for t in report.evaluate_targets(data, soak)}

    floor = targets["floor"]  # 1.5 / 2.0 on hello at both levels
    assert floor["value"] == pytest.approx(0.75) and floor["min"] == pytest.approx(0.75)
    assert floor["passed"] is False
    m2 = targets["m2_vs_uvicorn"]  # five ratios of 1.5 and one of 1.2: the lowest decides
    assert m2["min"] == pytest.approx(1.2)
    assert m2["value"] == pytest.approx((1.5**5 * 1.2) ** (1 / 6))
    assert m2["passed"] is False
    assert "page c=200: 1.20x" in m2["detail"]
    assert targets["gw_vs_uvicorn"]["value"] == pytest.approx(0.8)
    assert targets["gw_vs_uvicorn"]["passed"] is False
    gw_m2 = targets["gw_vs_m2"]  # the gateway issue: 0.8 / 1.5 five times, 0.8 / 1.2 once
    assert gw_m2["min"] == pytest.approx(0.8 / 1.5)
    assert gw_m2["value"] == pytest.approx(((0.8 / 1.5) ** 5 * (0.8 / 1.2)) ** (1 / 6))
    assert gw_m2["passed"] is False
    assert targets["handler_only"]["value"] == pytest.approx(0.7)
    assert targets["handler_only"]["passed"] is True
    assert targets["jobs_submit"]["value"] == pytest.approx(0.4)
    assert targets["jobs_submit"]["passed"] is False
    assert targets["jobs_map"]["value"] == pytest.approx(0.8)
    assert targets["jobs_map"]["passed"] is True
    assert "raw 150,000 jobs/s" in targets["jobs_map"]["detail"]
    assert targets["soak"]["passed"] is True  # 1% growth < 5%


def test_targets_not_measured() -> None:
    data = sample_data()
    data["stacks"] = data["stacks"][:1]
    data["handler_only"] = {"ratio": None, "reason": "skipped"}
    data["jobs"] = {"reason": "skipped"}
    targets = report.evaluate_targets(data, None)
    assert [t["passed"] for t in targets] == [None] * len(report.TARGETS)
    assert {t["detail"] for t in targets} == {"not measured", "skipped"}


def test_soak_summary_judges_only_takefive_processes() -> None:
    start = {"mongrel2": 10.0, "handler1": 30.0, "handler2": 30.0}
    mark = {"mongrel2": 12.0, "handler1": 31.0, "handler2": 32.0}
    end = {"mongrel2": 20.0, "handler1": 31.5, "handler2": 32.0}
    rows, worst, name = report.summarize_soak(start, mark, end)
    assert worst == pytest.approx(0.5 / 31.0)
    assert name == "handler1"
    by_name = {r["name"]: r for r in rows}
    assert by_name["mongrel2"]["growth"] == pytest.approx(8.0 / 12.0)
    assert by_name["mongrel2"]["judged"] is False
    assert by_name["handler2"]["growth"] == pytest.approx(0.0)
    rows, worst, name = report.summarize_soak(start, None, end)  # never reached the mark
    assert worst is None and name is None
    assert report.soak_growth(0.0, 5.0) is None


def floor_paired(*levels: tuple[int, list[float]]) -> dict[str, Any]:
    """A paired floor measurement: raw at 1000 req/s, takefive at ``ratio`` x that."""
    from bench.paired import pair_ratios

    return {
        "a": "raw-m2",
        "b": "takefive-m2-1",
        "route": "hello",
        "rounds": 3,
        "seconds": 5.0,
        "levels": [
            {
                "connections": c,
                "a_rps": [1000] * len(ratios),
                "b_rps": [round(1000 * r) for r in ratios],
                **pair_ratios([1000.0] * len(ratios), [1000.0 * r for r in ratios]),
            }
            for c, ratios in levels
        ],
    }


def test_the_floor_is_judged_on_its_paired_windows_when_measured() -> None:
    data = sample_data()  # back-to-back cells: 0.75x at both levels
    data["floor_paired"] = floor_paired((50, [0.88, 0.95, 1.02]), (200, [0.91, 0.99, 0.93]))
    floor = {t["id"]: t for t in report.evaluate_targets(data)}["floor"]
    assert floor["min"] == pytest.approx(0.93)  # the lower of the two medians
    assert floor["value"] == pytest.approx((0.95 * 0.93) ** 0.5)
    assert floor["passed"] is True
    assert "hello c=50: 0.95x (pairs 0.88 0.95 1.02)" in floor["detail"]
    assert "back-to-back cells: hello c=50: 0.75x" in floor["detail"]
    data["floor_paired"] = floor_paired((50, [0.95]), (200, [0.89]))
    assert {t["id"]: t for t in report.evaluate_targets(data)}["floor"]["passed"] is False
    for unmeasured in (None, {"reason": "skipped"}, {"levels": []}):
        data["floor_paired"] = unmeasured
        floor = {t["id"]: t for t in report.evaluate_targets(data)}["floor"]
        assert floor["min"] == pytest.approx(0.75) and floor["passed"] is False


def test_the_paired_section_lists_every_pair() -> None:
    data = sample_data()
    data["floor_paired"] = floor_paired((50, [0.88, 0.95, 1.02]))
    text = report.render_markdown(data)
    assert "### Paired windows" in text
    assert "3 pairs of 5 s windows per cell, not pinned" in text
    assert (
        "| /hello c=50 | 0.95x | 0.88x - 1.02x | 0.88x, 0.95x, 1.02x | 1,000, 1,000, 1,000 |"
        in text
    )
    data["floor_paired"] = {"reason": "skipped (--no-pairs)"}
    assert "Not measured: skipped (--no-pairs)." in report.render_markdown(data)


def lowest_again(route: str, level: int, ratios: list[float], a: str, b: str) -> dict[str, Any]:
    result = floor_paired((level, ratios))
    result.update(a=a, b=b, route=route)
    return result


def test_the_lowest_cell_is_found_per_target() -> None:
    data = sample_data()
    stack = report.find_stack(data, "takefive-m2-1")
    assert stack is not None
    report.find_result(stack, "page", 200)["rps"] = 5000.0 * 1.2  # type: ignore[index]
    assert report.lowest_cell(data, "takefive-m2-1", "uvicorn-starlette", ["hello", "page"]) == (
        "page",
        200,
        pytest.approx(1.2),
    )
    assert report.lowest_cell(data, "takefive-m2-1", "granian-starlette", ["hello"]) is None
    assert set(report.paired_targets(data)) == {"m2_vs_uvicorn", "gw_vs_uvicorn", "gw_vs_m2"}


def test_a_target_counts_its_lowest_cell_measured_again_in_pairs() -> None:
    data = sample_data()  # takefive-m2-1 vs uvicorn: 1.5x everywhere...
    stack = report.find_stack(data, "takefive-m2-1")
    assert stack is not None
    report.find_result(stack, "page", 200)["rps"] = 5000.0 * 1.2  # type: ignore[index]
    # ...but 1.2x back to back on page c=200, 1.34x when measured again in pairs
    again = lowest_again("page", 200, [1.31, 1.34, 1.4], "uvicorn-starlette", "takefive-m2-1")
    data["lowest_paired"] = {"m2_vs_uvicorn": again}
    m2 = {t["id"]: t for t in report.evaluate_targets(data)}["m2_vs_uvicorn"]
    assert m2["min"] == pytest.approx(1.34) and m2["passed"] is True
    assert m2["value"] == pytest.approx((1.5**5 * 1.2) ** (1 / 6))  # the mean: back to back
    assert m2["detail"].startswith("page c=200 again in paired windows: 1.34x (pairs 1.31")
    assert "back-to-back cells: hello c=50: 1.50x" in m2["detail"]
    # another back-to-back cell lower than the median pair still decides
    base = report.find_result(report.find_stack(data, "uvicorn-starlette"), "json", 50)
    report.find_result(stack, "json", 50)["rps"] = base["rps"] * 1.25  # type: ignore[index]
    m2 = {t["id"]: t for t in report.evaluate_targets(data)}["m2_vs_uvicorn"]
    assert m2["min"] == pytest.approx(1.25) and m2["passed"] is False
    for unmeasured in ({"reason": "not measured"}, {"levels": []}):
        data["lowest_paired"] = {"m2_vs_uvicorn": unmeasured}
        m2 = {t["id"]: t for t in report.evaluate_targets(data)}["m2_vs_uvicorn"]
        assert m2["min"] == pytest.approx(1.2)
    data["lowest_paired"] = {"m2_vs_uvicorn": again}
    text = report.render_markdown(data)
    assert (
        "**takefive + Mongrel2, 1 handler vs uvicorn + Starlette**: its lowest cell, "
        "3 pairs of 5 s windows per cell, not pinned." in text
    )
    assert "| /page c=200 | 1.34x | 1.31x - 1.40x |" in text


# --------------------------------------------------------------------------- markdown


def test_the_handler_only_table_names_every_pair() -> None:
    data = sample_data()
    data["handler_only"]["pairs"] = [
        {"ratio": r, "raw": {"msgs_per_s": 1.0}, "takefive": {"msgs_per_s": r}}
        for r in (0.84, 0.7, 0.65)
    ]
    report.compute_ratios(data)
    text = report.render_markdown(data)
    assert "3 pairs of runs (raw loop, takefive) in alternating order" in text
    assert "0.84x, 0.70x, 0.65x" in text


def test_render_markdown_tables() -> None:
    data = sample_data()
    report.compute_ratios(data)
    soak = {
        "stack_label": "takefive + Mongrel2, 1 handler",
        "route": "hello",
        "connections": 50,
        "requests_done": 2_000_100,
        "seconds": 120.0,
        "started": "2026-11-27T11:00:00+00:00",
        "mark_requests": 1_000_000,
        "mark_done": 1_000_050,
        "max_growth": 0.002,
        "max_growth_process": "handler1",
        "processes": [
            {
                "name": "mongrel2",
                "start": 10.0,
                "mark": 12.0,
                "end": 20.0,
                "growth": 0.66,
                "judged": False,
            },
            {
                "name": "handler1",
                "start": 30.0,
                "mark": 31.0,
                "end": 31.062,
                "growth": 0.002,
                "judged": True,
            },
        ],
    }
    text = report.render_markdown(data, soak)
    lines = text.splitlines()
    assert lines[0] == report.MARKER
    assert "## Results of 2026-11-27 10:00 UTC" in text
    header = (
        "| stack | hello c=50 | hello c=200 | json c=50 | json c=200 | page c=50 | page c=200 |"
    )
    assert header in lines
    row = next(
        line for line in lines if line.startswith("| takefive + Mongrel2, 1 handler | 1.50x")
    )
    assert "1.50x (30,000)" in row and "1.50x (7,500)" in row
    assert row.count("|") == 8
    # every table row has as many cells as its header
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            cells = lines[i - 1].count("|")
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert lines[j].count("|") == cells, lines[j]
                j += 1
    assert "| raw pyzmq + Mongrel2 | 0.50 / 2.00 |" in text  # latency p50 / p99 in ms
    assert "**missed**" in text and "**met**" in text
    assert "- granian + Starlette: not available: granian is not installed" in text
    assert "| takefive run (1 process), plain def handler | 70,000 | 0.70x | 98% |" in text
    assert "| takefive run (1 process), async def handler | 55,000 | 0.55x | 97% |" in text
    assert "| JobPool.map | 120,000 | 0.80x | 120,000, 110,000, 100,000 |" in text
    assert "| mongrel2 (not judged) | 10.0 | 12.0 | 20.0 | +66.00% |" in text
    assert "at 1,000,050" in text
    assert "| takefive + Mongrel2, 1 handler | server | 30.0 | 95% |" in text


def test_render_quick_run_and_missing_parts() -> None:
    data = sample_data()
    data["quick"] = True
    data["handler_only"] = None
    data["jobs"] = None
    data["note"] = "taken on a loaded machine"
    report.compute_ratios(data)
    text = report.render_markdown(data, None)
    assert "(quick run)" in text
    assert "> taken on a loaded machine" in text
    assert "Not measured: skipped in this run." in text
    assert "Not run yet: `python -m bench soak" in text


def test_merge_docs_keeps_the_hand_written_intro() -> None:
    intro = "# Performance\n\nHand-written words.\n\n"
    first = report.merge_docs(
        intro + report.MARKER + "\nold table\n", report.MARKER + "\nnew table"
    )
    assert first.startswith(intro)
    assert "old table" not in first and first.endswith("new table\n")
    assert first.count(report.MARKER) == 1
    fresh = report.merge_docs(None, report.MARKER + "\ntable")
    assert fresh.startswith(report.DEFAULT_INTRO)
    assert report.merge_docs(fresh, report.MARKER + "\ntable") == fresh


def test_write_docs(tmp_path: Path) -> None:
    data = sample_data()
    report.compute_ratios(data)
    path = tmp_path / "performance.md"
    path.write_text("# Mine\n\nkeep me\n\n" + report.MARKER + "\nstale\n")
    report.write_docs(path, copy.deepcopy(data), None)
    text = path.read_text()
    assert text.startswith("# Mine\n\nkeep me\n")
    assert "stale" not in text and "### Requests/s" in text


# --------------------------------------------------------------------------- content, floor, frames


def test_every_route_has_a_body_a_path_and_a_type() -> None:
    assert set(content.PATHS) == set(content.CONTENT_TYPES) == set(content.ROUTES)
    page = content.expected_body("page")
    assert 3500 <= len(page) <= 4600  # "a page of about 4 KB"
    assert b"Row 1 &amp; co" in page  # rendered with autoescape
    assert content.body_matches(
        "json", b'{"name": "takefive benchmark", ' + content.expected_body("json")[1:]
    )
    assert not content.body_matches("json", b"not json")
    assert not content.body_matches("hello", b"Hello")


def test_raw_handler_answers_are_complete_http_responses() -> None:
    answers = responses()
    assert set(answers) == {p.encode() for p in content.PATHS.values()}
    for route, path in content.PATHS.items():
        head, _, body = answers[path.encode()].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert f"Content-Length: {len(body)}".encode() in head
        assert f"Content-Type: {content.CONTENT_TYPES[route]}".encode() in head
        assert content.body_matches(route, body)


def test_handler_only_frames_are_valid_mongrel2_requests(tmp_path: Path) -> None:
    frames = build_frames(120)
    assert len(frames) == 120
    ids = set()
    for frame in frames:
        message = wire.parse_request(frame)
        assert message.path == "/hello" and message.method == "GET"
        assert message.headers["VERSION"] == "HTTP/1.1"
        ids.add(message.conn_id)
    assert len(ids) == 50
    path = tmp_path / "frames.bin"
    write_frames(frames[:3], path)
    data = path.read_bytes()
    (size,) = struct.unpack(">I", data[:4])
    assert data[4 : 4 + size] == frames[0]
    assert len(data) == sum(4 + len(f) for f in frames[:3])


def test_a_failed_stack_counts_as_not_measured() -> None:
    data = sample_data()
    stack = report.find_stack(data, "takefive-m2-1")
    assert stack is not None
    stack["status"] = "failed"  # partial figures before it broke
    targets = {t["id"]: t for t in report.evaluate_targets(data, None)}
    assert targets["m2_vs_uvicorn"]["passed"] is None
    assert targets["floor"]["detail"] == "not measured"
    text = report.render_markdown(data, None)
    assert "| takefive + Mongrel2, 1 handler | 1.50x" not in text


def test_paired_ratios_are_per_pair_with_their_spread() -> None:
    from bench.paired import pair_ratios

    out = pair_ratios([100.0, 200.0, 150.0], [90.0, 210.0, 120.0])
    assert out["ratios"] == [0.9, 1.05, 0.8]
    assert out["median"] == pytest.approx(0.9)
    assert (out["min"], out["max"]) == (pytest.approx(0.8), pytest.approx(1.05))
    with pytest.raises(ValueError):
        pair_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        pair_ratios([0.0], [1.0])


def test_a_paired_floor_that_cannot_run_is_reported_and_the_run_goes_on() -> None:
    from bench import suite

    def fails() -> dict[str, Any]:
        raise RuntimeError("raw-m2 cannot run here: mongrel2 is not installed")

    data = suite.run_suite(
        [], suite.Settings(), handler_only=None, floor_paired=fails, log=lambda _: None
    )
    assert data["floor_paired"] == {
        "reason": "RuntimeError: raw-m2 cannot run here: mongrel2 is not installed"
    }
    measured = floor_paired((50, [1.0]))
    seen: list[dict[str, Any]] = []

    def lowest(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data)
        return {"m2_vs_uvicorn": {"reason": "not measured"}}

    data = suite.run_suite(
        [],
        suite.Settings(),
        handler_only=None,
        floor_paired=lambda: measured,
        lowest_paired=lowest,
        log=print,
    )
    assert data["floor_paired"] is measured
    assert seen == [data] and data["lowest_paired"] == {"m2_vs_uvicorn": {"reason": "not measured"}}


def test_the_in_process_tool_serves_every_frame() -> None:
    """bench/inprocess.py drives the runner's own dispatch: it must keep up with it."""
    import asyncio

    from bench import inprocess

    for path in ("/hello", "/json", "/page"):
        assert asyncio.run(inprocess._run(build_frames(50, path))) > 0


def test_socket_errors_of_paired_windows_are_shown() -> None:
    data = sample_data()
    again = lowest_again("page", 200, [1.3, 1.4], "uvicorn-starlette", "takefive-m2-1")
    again["levels"][0].update(a_socket_errors=[0, 69], b_socket_errors=[0, 0])
    data["lowest_paired"] = {"m2_vs_uvicorn": again}
    text = report.render_markdown(data)
    assert (
        "Socket errors at c=200 (timeouts of an overloaded server; its completed requests" in text
    )
    assert "uvicorn-starlette 69, takefive-m2-1 0." in text
    del again["levels"][0]["a_socket_errors"], again["levels"][0]["b_socket_errors"]
    assert "Socket errors" not in report.render_markdown(data)  # results from before


def test_the_front_end_gets_a_cpu_of_its_own() -> None:
    from bench.placement import Placement, front_end_alone

    assert front_end_alone([3]) is None  # one CPU: nothing to place
    placement = front_end_alone([5, 2, 7])
    assert placement == Placement(frozenset({2}), frozenset({5, 7}))
    assert placement.cpus_for("mongrel2") == {2}
    assert placement.cpus_for("gateway.child1") == {2}
    assert placement.cpus_for("handler1") == {5, 7}
    assert placement.cpus_for("handler1.child1") == {5, 7}
    assert placement.to_json() == {"front_end": [2], "others_and_wrk": [5, 7]}
    with pytest.raises(ValueError):
        Placement(frozenset(), frozenset({1}))


def test_pinning_reaches_every_thread_of_a_real_process() -> None:
    """A process with a second thread, started before the pin, ends on the placement's CPU."""
    import os
    import subprocess

    import psutil
    from bench.placement import Placement, pin

    cpu = min(os.sched_getaffinity(0))
    code = (
        "import threading, time, sys\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "print('up', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        process = psutil.Process(child.pid)
        threads = [t.id for t in process.threads()]
        assert len(threads) == 2
        everything = frozenset(os.sched_getaffinity(0))
        pin([("handler1", process)], Placement(everything, frozenset({cpu})))
        assert [os.sched_getaffinity(t) for t in threads] == [{cpu}, {cpu}]
        pin([("mongrel2", process)], Placement(everything, frozenset({cpu})))
        assert [os.sched_getaffinity(t) for t in threads] == [everything, everything]
    finally:
        child.kill()
        child.wait()
    pin([("handler1", process)], Placement(everything, frozenset({cpu})))  # gone: no error


def test_wrk_runs_through_taskset_when_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wrk, "wrk_path", lambda: "/usr/bin/wrk")  # taskset: util-linux
    cmd = wrk.command("http://127.0.0.1:1/hello", 50, 2.0, cpus={3, 1})
    assert cmd[0].endswith("/taskset") and cmd[1:4] == ["-c", "1,3", "/usr/bin/wrk"]
    assert wrk.command("http://127.0.0.1:1/hello", 50, 2.0)[0] == "/usr/bin/wrk"


def test_a_pinned_floor_says_so() -> None:
    data = sample_data()
    data["floor_paired"] = floor_paired((50, [0.98, 0.97, 0.99]))
    data["floor_paired"]["placement"] = {"front_end": [0], "others_and_wrk": [1]}
    text = report.render_markdown(data)
    assert (
        "3 pairs of 5 s windows per cell, pinned: the front end on CPU 0, "
        "the handler and wrk on CPU 1 (bench/placement.py)" in text
    )
    floor = {t["id"]: t for t in report.evaluate_targets(data)}["floor"]
    assert floor["detail"].startswith("paired windows: pinned, hello c=50: 0.98x")
    data["floor_paired"]["placement"] = None
    assert "3 pairs of 5 s windows per cell, not pinned" in report.render_markdown(data)


def test_the_jobs_targets_count_the_median_round() -> None:
    data = sample_data()
    data["jobs"].update(
        repeat=3,
        ratio=0.75,
        map_ratio=0.9,
        ratios=[0.5, 0.75, 1.1],
        map_ratios=[0.9, 0.8, 1.2],
    )
    targets = {t["id"]: t for t in report.evaluate_targets(data)}
    assert targets["jobs_submit"]["value"] == pytest.approx(0.75)
    assert targets["jobs_submit"]["passed"] is True
    assert targets["jobs_map"]["value"] == pytest.approx(0.9)
    text = report.render_markdown(data)
    assert "3 rounds of the three legs in a rotating order" in text
    assert (
        "| JobPool.submit | 60,000 | 0.75x | 60,000, 59,000, 58,000 | 0.50x, 0.75x, 1.10x |" in text
    )
    del data["jobs"]["ratios"]  # results from before the rounds: best over best
    assert {t["id"]: t for t in report.evaluate_targets(data)}["jobs_submit"][
        "value"
    ] == pytest.approx(0.4)
    assert "best of 3 interleaved runs per leg" in report.render_markdown(data)


def test_the_jobs_round_trip_runs_each_leg_once_per_round_in_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The order rotates; the ratios are per round (the legs' own runs are real elsewhere)."""
    from bench import bench_jobs

    order: list[str] = []
    rates = iter([100.0, 50.0, 80.0, 70.0, 90.0, 200.0, 120.0, 150.0, 60.0])

    def leg(name: str) -> Any:
        def run(*_: Any) -> float:
            order.append(name)
            return next(rates)

        return run

    monkeypatch.setattr(bench_jobs, "bench_raw", leg("raw"))
    monkeypatch.setattr(
        bench_jobs, "bench_takefive", lambda j, w, chunk=0: leg("map" if chunk else "tf")()
    )
    out = bench_jobs.measure(jobs=10, window=5, repeat=3, chunk=5)
    assert order == ["raw", "tf", "map", "tf", "map", "raw", "map", "raw", "tf"]
    # raw 100, 200, 150; tf 50, 70, 60; map 80, 90, 120
    assert out["ratios"] == [0.5, 0.35, 0.4] and out["ratio"] == pytest.approx(0.4)
    assert out["map_ratios"] == [0.8, 0.45, 0.8] and out["map_ratio"] == pytest.approx(0.8)
    assert (out["raw_jobs_per_s"], out["takefive_jobs_per_s"]) == (150, 60)
    assert out["takefive_map_jobs_per_s"] == 90


def test_the_jobs_round_trip_really_runs() -> None:
    """A small real run of every leg: a raw echo child and a ``takefive worker``."""
    from bench import bench_jobs

    out = bench_jobs.measure(jobs=300, window=30, repeat=1, chunk=10)
    assert out["raw_jobs_per_s"] > 0 and out["takefive_jobs_per_s"] > 0
    assert out["takefive_map_jobs_per_s"] > 0 and len(out["ratios"]) == 1


def test_cpu_per_request_is_each_process_median_window() -> None:
    from bench.paired import cpu_per_request, window_seconds

    windows = [{"mongrel2": 27.0, "handler1": 12.0}, {"mongrel2": 29.0}, {"mongrel2": 28.0}]
    assert cpu_per_request(windows) == {"handler1": 12.0, "mongrel2": 28.0}
    assert cpu_per_request([]) == {}
    assert (window_seconds(2.0), window_seconds(2.5), window_seconds(0.2)) == (2, 2, 1)


def test_the_paired_windows_show_cpu_per_request() -> None:
    data = sample_data()
    data["floor_paired"] = floor_paired((50, [0.98, 0.97, 0.99]))
    data["floor_paired"]["levels"][0].update(
        a_cpu_us={"handler1": 11.55, "mongrel2": 27.68},
        b_cpu_us={"handler1": 13.45, "mongrel2": 27.82},
    )
    text = report.render_markdown(data)
    expected = (
        "raw-m2: handler1 11.6 us, mongrel2 27.7 us; takefive-m2-1: handler1 13.4 us, "
        "mongrel2 27.8 us"
    )
    assert f"CPU per request at c=50 (each process's median window): {expected}." in text
    floor = {t["id"]: t for t in report.evaluate_targets(data)}["floor"]
    assert f"; CPU per request: {expected})" in floor["detail"]


def test_only_stacks_with_a_front_end_are_pinned() -> None:
    from bench import paired
    from bench.placement import Placement
    from bench.stackdefs import by_name

    stacks = by_name()
    with pytest.raises(RuntimeError, match="uvicorn-starlette has no front end process"):
        paired.measure(
            stacks["takefive-m2-1"],
            stacks["uvicorn-starlette"],
            "hello",
            (50,),
            1,
            1.0,
            placement=Placement(frozenset({0}), frozenset({1})),
        )
