"""The HTML viewer: what the page embeds (escaped, validated, lazily parsed) and, in headless Chromium, what it shows.

Browser tests are marked `browser`; they drive Debian's `chromium` through Playwright (no browser download) and
are skipped, saying why, only when no chromium is installed (`make test` tries to install it first).
"""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest
from typer.testing import CliRunner

from chainprune.cli import app
from chainprune.pipelines.view import run_view
from chainprune.pruning import prune_chain
from chainprune.report.viewer import ViewerSource, render_viewer, script_json, viewer_example
from chainprune.types import Chain

CHAINS = [
    Chain("natalia", "How many clips?", "Natalia sold 48/2 = 24 clips.", "The answer is 24."),
    Chain("weng", "How much per minute?", "Weng earns 12/60 = $0.2 per minute.", "The answer is 0.2."),
    Chain("betty", "How much does Betty have?", "Betty has only 100 / 2 = $50.", "The answer is 50."),
]

NASTY = ["</script><script>window.pwned = 1</script>", " <b>bold</b>", " &amp;", " &lt;", " a\u2028b", " {{script}}", " <!--", " ok"]


def hand_trace(example_id, texts, steps, objective_values=None, categories=None, pruned=None):
    tokens = [{"position": i, "text": t, "deleted_step": s} for i, (t, s) in enumerate(zip(texts, steps))]
    if categories:
        for token, category in zip(tokens, categories):
            token["category"] = category
    order = sorted((s, i) for i, s in enumerate(steps) if s is not None)
    record = {"id": example_id, "tokens": tokens, "deletion_order": [i for _, i in order], "pruned": pruned or {}}
    if objective_values is not None:
        record["objective_values"] = objective_values
    return record


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def tiny_traces(tiny_pruner):
    """Real traces of three chains from the tiny seeded model: joint and answer objectives, down to keep 0.3."""
    joint = [prune_chain(tiny_pruner, c, keep=[0.9, 0.5, 0.3], objective="joint").to_json() for c in CHAINS]
    answer = [prune_chain(tiny_pruner, c, keep=[0.5], objective="answer").to_json() for c in CHAINS[:2]]
    return joint, answer


def visible_count(record, steps):
    return sum(1 for t in record["tokens"] if t["deleted_step"] is None or t["deleted_step"] > steps)


def kept_text(record, steps):
    return "".join(t["text"] for t in record["tokens"] if t["deleted_step"] is None or t["deleted_step"] > steps)


# ---- what the page embeds ----


def test_script_json_cannot_close_its_script_block():
    value = {"text": "</script><!-- & > \u2028\u2029 <b>"}
    out = script_json(value)
    assert not re.search("[<>&\u2028\u2029]", out)
    assert json.loads(out) == value


def test_real_traces_are_accepted(tiny_traces):
    joint, _ = tiny_traces
    for record in joint:
        example = viewer_example(record)
        assert example["n"] == len(record["reasoning_ids"]) == len(example["texts"])
        assert example["deletions"] == len(record["deletion_order"]) > 0
        assert example["objective_values"] == record["objective_values"]
        assert example["keeps"] == ["0.9", "0.5", "0.3"]
        assert example["kept_at"] == {k: v["num_tokens"] for k, v in record["pruned"].items()}
        assert example["info"]["objective"] == "joint"


@pytest.mark.parametrize(
    "record, message",
    [
        ([1, 2], "expected a JSON object"),
        ({"tokens": []}, "missing field 'id'"),
        ({"id": 1.5, "tokens": []}, "field 'id' must be a string or integer"),
        ({"id": "a"}, "missing field 'tokens'"),
        ({"id": "a", "tokens": [{"text": 3, "deleted_step": None}]}, "tokens[0] must be an object with a string 'text'"),
        ({"id": "a", "tokens": [{"text": "x", "deleted_step": 0}]}, "tokens[0].deleted_step must be a positive integer or null"),
        ({"id": "a", "tokens": [{"text": "x", "deleted_step": 2}]}, "deleted_step values are not 1, 2, ..."),
        ({"id": "a", "tokens": [{"text": "x", "deleted_step": 1}, {"text": "y", "deleted_step": None}], "deletion_order": [1]},
         "deletion_order[0] = 1 disagrees"),
        ({"id": "a", "tokens": [{"text": "x", "deleted_step": 1}], "deletion_order": []}, "deletion_order has 0 entries but 1"),
        ({"id": "a", "tokens": [], "objective_values": ["x"]}, "'objective_values' must be a list of numbers"),
        ({"id": "a", "tokens": [], "pruned": {"half": {}}}, "pruned key 'half' is not a keep fraction"),
        ({"id": "a", "tokens": [], "pruned": {"0.5": {"num_tokens": 2}}}, "pruned['0.5'].num_tokens must be an integer from 0 to 0"),
        ({"id": "a", "tokens": [{"text": "x", "deleted_step": None, "category": 3}]}, "tokens[0].category must be a string"),
    ],
)
def test_bad_records_say_what_is_wrong(record, message):
    with pytest.raises(ValueError) as e:
        viewer_example(record)
    assert message in str(e.value)


def test_missing_optional_fields_and_non_finite_values_are_tolerated():
    example = viewer_example({"id": 3, "tokens": [{"text": "a", "deleted_step": 1}, {"text": "b", "deleted_step": None}],
                              "objective_values": [1.0, float("nan")]})
    assert example["objective_values"] == [1.0, None]  # JSON.parse knows no NaN
    assert example["keeps"] == [] and example["deletions"] == 1 and "categories" not in example


def test_page_is_self_contained_with_one_lazy_block_per_example():
    records = [hand_trace(f"ex{k}", ["a", " b", " c"], [2, None, 1]) for k in range(5)]
    source = ViewerSource("one.jsonl", {r["id"]: viewer_example(r) for r in records})
    page = render_viewer([source, ViewerSource("two.jsonl", {"ex4": viewer_example(records[4])})], title="T <&>")
    assert len(re.findall(r'<script type="application/json" id="ex-\d+">', page)) == 5
    assert "<title>T &lt;&amp;&gt;</title>" in page
    # Nothing to fetch: no src/href attributes, no URL other than the SVG namespace, a CSP forbidding the rest.
    assert not re.search(r"\s(src|href)\s*=", page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page
    index = json.loads(re.search(r'id="viewer-index">(.*?)</script>', page, re.S).group(1))
    assert [e["id"] for e in index["examples"]] == [f"ex{k}" for k in range(5)]
    assert index["examples"][4]["in"] == [0, 1] and index["examples"][0]["in"] == [0]


def test_run_view_reports_bad_lines_and_shows_the_rest(tmp_path):
    good = hand_trace("a", ["x", " y"], [1, None])
    path = write_jsonl(tmp_path / "t.jsonl", [good, "{oops", {"id": "b"}, good, hand_trace("c", ["z"], [None])])
    summary = run_view([path], tmp_path / "out" / "v.html")
    assert summary.out.exists() and summary.examples == 2 and summary.per_source == {"t.jsonl": 2}
    problems = {(e.line, e.id): e.message for _, e in summary.failures}
    assert "not valid JSON" in problems[(2, None)]
    assert "missing field 'tokens'" in problems[(3, "b")]
    assert "duplicate id (first seen on line 1)" in problems[(4, "a")]


def test_cli_view_exit_codes(tmp_path):
    runner = CliRunner()
    good = write_jsonl(tmp_path / "good.jsonl", [hand_trace("a", ["x", " y"], [1, None])])
    result = runner.invoke(app, ["view", str(good), "-o", str(tmp_path / "v.html")])
    assert result.exit_code == 0, result.output
    assert "viewer:" in result.output and (tmp_path / "v.html").exists()
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [hand_trace("a", ["x"], [None]), "not json"])
    result = runner.invoke(app, ["view", str(mixed), "-o", str(tmp_path / "m.html")])
    assert result.exit_code == 1 and "line 2" in result.output
    empty = write_jsonl(tmp_path / "empty.jsonl", ["not json"])
    result = runner.invoke(app, ["view", str(empty), "-o", str(tmp_path / "e.html")])
    assert result.exit_code == 2 and "no valid trace" in result.output
    assert not (tmp_path / "e.html").exists()


def test_demo_writes_the_viewer_next_to_its_traces(tmp_path, tiny_pruner, monkeypatch):
    import chainprune.pipelines.demo as demo

    real_run_prune = demo.run_prune
    # The demo's own code path, with the tiny model standing in for the bundled one (which takes minutes).
    monkeypatch.setattr(demo, "run_prune", lambda *a, **k: real_run_prune(*a, **k, loader=lambda config: tiny_pruner))
    monkeypatch.setattr(demo, "demo_chains_path", lambda: write_jsonl(tmp_path / "chains.jsonl", [c.__dict__ for c in CHAINS]))
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    viewer = demo.demo_viewer_path(tmp_path / "demo")
    assert f"viewer:{viewer}" in "".join(result.output.split())  # the path is printed (rich may wrap it)
    page = viewer.read_text()
    assert page.count('<script type="application/json" id="ex-') == 3
    for record in map(json.loads, (tmp_path / "demo" / "traces.jsonl").read_text().splitlines()):
        assert script_json(record["id"]) in page


# ---- in the browser ----


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("no `chromium` on PATH (make test installs Debian's chromium when run as root; apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        # Never let Playwright download a browser: drive the system's chromium. Root needs --no-sandbox.
        instance = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def open_page(browser):
    pages = []

    def open_(html_path, width=1280, height=900):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("dialog", lambda d: (page.errors.append("dialog: " + d.message), d.dismiss()))
        page.goto(html_path.resolve().as_uri())
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()


def column_state(page, source=0):
    column = page.locator(f'.column[data-source="{source}"]')
    return {
        "visible": column.locator(".tok:not(.del)").count(),
        "deleted": column.locator(".tok.del").count(),
        "kept_text": column.locator(".kept-text").text_content(),
        "deletions": int(column.get_attribute("data-deletions")),
    }


@pytest.mark.browser
def test_slider_keys_and_example_switching_match_the_traces(tmp_path, tiny_traces, open_page):
    joint, _ = tiny_traces
    traces = write_jsonl(tmp_path / "joint.jsonl", joint)
    page = open_page(run_view([traces], tmp_path / "viewer.html").out)

    first = joint[0]
    assert page.locator("#example-title").text_content() == first["id"]
    slider = page.locator("#slider")
    total = len(first["deletion_order"])
    assert int(slider.get_attribute("max")) == total
    for steps in (0, 1, total // 2, total):
        slider.fill(str(steps))
        state = column_state(page)
        assert state["deletions"] == steps
        assert state["visible"] == visible_count(first, steps) == len(first["tokens"]) - steps
        assert state["kept_text"] == kept_text(first, steps)
    # Keyboard: one deletion back, then ten forward (clamped to the last deletion).
    page.locator("body").press("ArrowLeft")
    assert column_state(page)["visible"] == visible_count(first, total - 1)
    page.keyboard.press("Home")
    assert column_state(page)["visible"] == len(first["tokens"])
    page.keyboard.press("Shift+ArrowRight")
    assert column_state(page)["visible"] == visible_count(first, min(10, total))
    # A trace's own keep fraction: exactly its pruned text's length.
    page.locator('#keep-buttons button[data-keep="0.5"]').click()
    assert column_state(page)["visible"] == first["pruned"]["0.5"]["num_tokens"]

    # Switch examples from the list, then with the arrow keys; the keep fraction stays.
    page.locator("#example-list button", has_text=joint[2]["id"]).click()
    assert page.locator("#example-title").text_content() == joint[2]["id"]
    assert column_state(page)["visible"] == joint[2]["pruned"]["0.5"]["num_tokens"]
    assert page.locator(".column .tok").count() == len(joint[2]["tokens"])
    page.keyboard.press("ArrowUp")
    assert page.locator("#example-title").text_content() == joint[1]["id"]
    assert column_state(page)["kept_text"] == kept_text(joint[1], len(joint[1]["tokens"]) - joint[1]["pruned"]["0.5"]["num_tokens"])

    # The chart marks the current deletion step.
    marker = page.locator(".column .chart .marker")
    x_before = float(marker.get_attribute("x1"))
    page.keyboard.press("ArrowRight")
    assert float(marker.get_attribute("x1")) > x_before

    # Search by text, then by id.
    page.locator("#search").fill("minute")
    assert page.locator("#example-list li").count() == 1
    page.locator("#search").press("Enter")
    assert page.locator("#example-title").text_content() == "weng"
    page.locator("#search").fill("BETTY")
    assert page.locator("#example-list li").all_text_contents()[0].startswith("betty")

    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert page.errors == []


@pytest.mark.browser
def test_token_text_with_markup_is_shown_literally(tmp_path, open_page):
    steps = [None, 3, None, 1, None, 2, None, None]
    record = hand_trace("<img src=x onerror=alert(1)>", NASTY, steps, objective_values=[-5.0, -4.0, -3.5, -3.0])
    page = open_page(run_view([write_jsonl(tmp_path / "nasty.jsonl", [record])], tmp_path / "v.html").out)
    assert page.locator("#example-title").text_content() == record["id"]
    assert page.locator(".column .tok").all_text_contents() == NASTY
    assert page.locator(".column .kept-text").text_content() == "".join(NASTY)
    assert page.locator(".column b, .column script, .column img, #example-list img").count() == 0
    assert page.evaluate("window.pwned") is None
    page.locator("#slider").fill("3")
    assert page.locator(".column .kept-text").text_content() == kept_text(record, 3)
    assert page.errors == []


@pytest.mark.browser
def test_side_by_side_shares_one_keep_fraction(tmp_path, tiny_traces, open_page):
    joint, answer = tiny_traces
    a = write_jsonl(tmp_path / "joint.jsonl", joint)
    b = write_jsonl(tmp_path / "answer.jsonl", answer)
    page = open_page(run_view([a, b], tmp_path / "v.html").out)
    assert page.locator(".column h3").all_text_contents() == ["joint.jsonl", "answer.jsonl"]
    page.locator('#keep-buttons button[data-keep="0.5"]').click()
    for source, record in enumerate((joint[0], answer[0])):
        state = column_state(page, source)
        assert state["visible"] == record["pruned"]["0.5"]["num_tokens"]
        assert state["kept_text"] == kept_text(record, len(record["tokens"]) - record["pruned"]["0.5"]["num_tokens"])
    # Beyond the answer trace's last keep (0.5) it stays at its end and says so.
    page.keyboard.press("End")
    assert column_state(page, 0)["deletions"] == len(joint[0]["deletion_order"])
    assert column_state(page, 1)["deletions"] == len(answer[0]["deletion_order"])
    assert "stops after" in page.locator('.column[data-source="1"] .note').text_content()
    # An id only in the first file: the second column says so.
    page.locator("#example-list button", has_text="betty").click()
    assert "no trace with this id" in page.locator('.column[data-source="1"]').text_content()
    assert page.errors == []


@pytest.mark.browser
def test_a_word_trace_moves_by_whole_words(tmp_path, open_page):
    from test_unit_traces import token_trace, unit_trace

    words = unit_trace().to_json()  # 10 tokens; steps delete 2, 2 and 3 of them (test_unit_traces)
    page = open_page(run_view([write_jsonl(tmp_path / "w.jsonl", [words])], tmp_path / "v.html").out)
    slider = page.locator("#slider")
    assert int(slider.get_attribute("max")) == 3  # three word deletions, not seven token deletions
    for steps, visible in ((0, 10), (1, 8), (2, 6), (3, 3)):
        slider.fill(str(steps))
        state = column_state(page)
        assert (state["deletions"], state["visible"]) == (steps, visible)
        assert state["kept_text"] == kept_text(words, steps)
    slider.fill("1")
    assert page.locator(".column .tok.just").all_text_contents() == [" so", "ld"]  # the word goes as one
    assert "1 of 3 word deletions" in page.locator("#slider-label").text_content()
    assert "objective -11.00" in page.locator(".column .stats").text_content()
    page.keyboard.press("ArrowRight")
    assert column_state(page)["visible"] == 6
    # Keep fractions (in tokens) are cut where a word ends: 0.7 keeps 6 tokens, 0.5 keeps 3.
    for key, visible in (("0.9", 8), ("0.7", 6), ("0.5", 3)):
        page.locator(f'#keep-buttons button[data-keep="{key}"]').click()
        assert column_state(page)["visible"] == visible
    assert "deleted by word" in page.locator(".column .info").first.text_content()

    # Beside a token trace under one slider: each column at its own state for the same keep fraction.
    tokens = token_trace([4, 9, 3, 8, 1], [-10.0 - s for s in range(6)]).to_json()
    page = open_page(run_view([write_jsonl(tmp_path / "w.jsonl", [words]), write_jsonl(tmp_path / "t.jsonl", [tokens])],
                              tmp_path / "v2.html").out)
    page.locator('#keep-buttons button[data-keep="0.5"]').click()
    assert column_state(page, 0)["visible"] == 3 and column_state(page, 1)["visible"] == 5
    page.locator("#slider").fill("3")  # 3 of 10 tokens: the word trace is at 2 words (4 tokens), not 1.5
    assert (column_state(page, 0)["deletions"], column_state(page, 0)["visible"]) == (2, 6)
    assert column_state(page, 1)["visible"] == 7
    assert page.errors == []


@pytest.mark.browser
def test_baseline_columns_follow_their_matched_counts_without_a_chart(tmp_path, tiny_traces, open_page):
    joint, _ = tiny_traces
    greedy = joint[0]
    n = len(greedy["tokens"])
    # A baseline-like record: a full ranking (every token gets a step), no objective values, and a keep
    # fraction matched to student lengths that keeps one token fewer than floor(n/2).
    texts = [t["text"] for t in greedy["tokens"]]
    baseline = hand_trace(greedy["id"], texts, list(range(n, 0, -1)), pruned={"0.5": {"num_tokens": n // 2 - 1}})
    baseline["method"] = "uniform"
    a = write_jsonl(tmp_path / "greedy.jsonl", [greedy])
    b = write_jsonl(tmp_path / "uniform.jsonl", [baseline])
    page = open_page(run_view([a, b], tmp_path / "v.html").out)
    page.locator('#keep-buttons button[data-keep="0.5"]').click()
    assert column_state(page, 0)["visible"] == greedy["pruned"]["0.5"]["num_tokens"] == n // 2
    assert column_state(page, 1)["visible"] == n // 2 - 1
    assert column_state(page, 1)["kept_text"] == "".join(texts[: n // 2 - 1])  # the ranking deletes from the end
    second = page.locator('.column[data-source="1"]')
    assert second.locator(".chart").count() == 0 and "no objective values" in second.text_content()
    assert "uniform" in second.locator(".info").first.text_content()
    page.keyboard.press("End")
    assert column_state(page, 1)["visible"] == 0
    assert page.errors == []


@pytest.mark.browser
def test_categories_are_coloured_with_a_legend(tmp_path, open_page):
    texts = ["Tom", " has", " 3", " +", " 4", " apples"]
    categories = ["EntName", "Grammar", "SymbMath", "SymbMath", "SymbMath", "Novel"]
    record = hand_trace("cats", texts, [2, 1, None, None, None, 3], categories=categories)
    page = open_page(run_view([write_jsonl(tmp_path / "c.jsonl", [record])], tmp_path / "v.html").out)
    legend = page.locator("#legend .legend-item").all_text_contents()
    assert legend == ["SymbMath", "EntName", "Grammar", "Novel"]  # the paper's order first, then others
    colours = page.locator(".column .tok.cat").evaluate_all("spans => spans.map(s => s.style.getPropertyValue('--cat'))")
    assert len(colours) == 6 and colours[2] == colours[3] == colours[4] and len(set(colours)) == 4
    page.locator("#slider").fill("2")
    assert "SymbMath 3/3 · EntName 0/1 · Grammar 0/1 · Novel 1/1" in page.locator(".column").text_content()
    assert page.errors == []


@pytest.mark.browser
def test_thousands_of_examples_load_fast_one_page_at_a_time(tmp_path, open_page):
    words = [f" w{i}" for i in range(150)]
    steps = list(range(1, 76)) + [None] * 75
    records = [hand_trace(f"ex{k:04d}", [f"Example {k}"] + words, [None] + steps, objective_values=[float(-s) for s in range(76)])
               for k in range(3000)]
    html = run_view([write_jsonl(tmp_path / "big.jsonl", records)], tmp_path / "big.html").out
    start = time.perf_counter()
    page = open_page(html)
    page.wait_for_selector(".column .tok")
    load_seconds = time.perf_counter() - start
    assert load_seconds < 15, f"page took {load_seconds:.1f} s to load"
    assert page.locator("#example-list li").count() == 50  # one page of the list, not 3000 rows
    assert page.locator(".column .tok").count() == 151  # only the shown example is parsed and drawn
    assert page.locator("#list-status").text_content() == "3000 examples"
    page.locator("#next-page").click()
    assert page.locator("#example-list li").first.text_content().startswith("ex0050")
    page.locator("#search").fill("Example 2999")
    page.locator("#search").press("Enter")
    assert page.locator("#example-title").text_content() == "ex2999"
    start = time.perf_counter()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    assert column_state(page)["deletions"] == 20
    assert time.perf_counter() - start < 5
    assert page.errors == []
