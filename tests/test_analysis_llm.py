"""LLM annotator and readability judge against a fake OpenAI-compatible server on 127.0.0.1 (no network):
valid replies, malformed replies, HTTP errors, retries, and the on-disk cache."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from chainprune.analysis.judge import RUBRIC, parse_judgment, summarize
from chainprune.analysis.llm import JsonLLM, LLMAnnotator, LLMError, share_within_words
from chainprune.cli import app
from chainprune.pipelines.analyze import run_judge


class FakeOpenAI:
    """Serves /v1/chat/completions from a script: each item is a (status, content) pair, or a callable
    taking the request body and returning one; the last item repeats. Records every request body."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                item = fake.script[min(len(fake.requests), len(fake.script)) - 1]
                status, content = item(body) if callable(item) else item
                if status == 200:
                    payload = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}]}
                else:
                    payload = {"error": {"message": content, "type": "server_error"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def llm(server, tmp_path=None, retries=3, **kw):
    return JsonLLM("fake-model", server.url, api_key_env="CHAINPRUNE_TEST_NO_KEY", retries=retries,
                   cache=tmp_path / "cache" if tmp_path else None, timeout=10, backoff=0, **kw)


TOKENS = ["Natalia", " sold", " 48", "/", "2", " clips"]
GOOD = json.dumps({"categories": ["EntName", "Grammar", "SymbMath", "SymbMath", "SymbMath", "EntName"]})


def test_annotator_retries_malformed_replies_then_caches(tmp_path):
    script = [
        (500, "overloaded"),
        (200, "this is not json"),
        (200, json.dumps({"categories": ["EntName"]})),  # wrong length
        (200, json.dumps({"categories": ["EntName"] * 5 + ["Bogus"]})),  # unknown category
        (200, GOOD),
    ]
    with FakeOpenAI(script) as server:
        client = llm(server, tmp_path, retries=4)
        assert LLMAnnotator(llm=client)(TOKENS) == json.loads(GOOD)["categories"]
        assert len(server.requests) == 5 and client.requests == 5
        body = server.requests[0]
        assert body["model"] == "fake-model" and body["response_format"]["type"] == "json_schema"
        assert '"Natalia"' in body["messages"][1]["content"] and "temperature" not in body
        # the same request again comes from the cache: no new request, same answer
        again = llm(server, tmp_path, retries=0)
        assert LLMAnnotator(llm=again)(TOKENS) == json.loads(GOOD)["categories"] and len(server.requests) == 5


def test_annotator_gives_up_with_the_last_problem(tmp_path):
    with FakeOpenAI([(200, "{broken")]) as server:
        with pytest.raises(LLMError, match="3 attempt.*not valid JSON"):
            LLMAnnotator(llm=llm(server, tmp_path, retries=2))(TOKENS)
        assert len(server.requests) == 3
        assert not list((tmp_path / "cache").rglob("*.json"))  # nothing invalid is cached


def test_word_pieces_agree_after_llm_labels():
    # the LLM labels "tw" VerbalMath but "ice" Grammar: the word takes the higher priority
    assert share_within_words(["tw", "ice", " 5", "\n"], ["VerbalMath", "Grammar", "SymbMath", "EntName"]) == \
        ["VerbalMath", "VerbalMath", "SymbMath", "Grammar"]


def traces_file(tmp_path, texts=None):
    path = tmp_path / "traces.jsonl"
    rows = []
    for i, token_texts in (texts or {"a": TOKENS, "b": TOKENS}).items():
        tokens = [{"position": k, "text": t, "deleted_step": None} for k, t in enumerate(token_texts)]
        rows.append({"id": i, "prompt_ids": [1], "reasoning_ids": list(range(6)), "answer_ids": [2],
                     "deletion_order": [1, 5, 0], "objective_values": [0.0] * 4, "tokens": tokens,
                     "pruned": {"0.5": {"text": "", "num_tokens": 3}}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_annotate_cli_with_llm_reports_failures(tmp_path, monkeypatch):
    # chain "a" gets a good reply; "b" only malformed ones: "a" is written, "b" reported, exit code 1
    def reply(body):
        return (200, GOOD) if '"Natalia"' in body["messages"][1]["content"] else (200, "[]")

    texts = {"a": TOKENS, "b": ["So", " she", " ate", " 2", " of", " them"]}
    with FakeOpenAI([reply]) as server:
        out = tmp_path / "annotated.jsonl"
        result = CliRunner().invoke(app, ["annotate", str(traces_file(tmp_path, texts)), "--out", str(out), "--annotator", "llm",
                                          "--base-url", server.url, "--llm-model", "m", "--retries", "1"])
        assert result.exit_code == 1, result.output
        rows = [json.loads(l) for l in out.read_text().splitlines()]
        assert [r["id"] for r in rows] == ["a"] and rows[0]["tokens"][2]["category"] == "SymbMath"
        assert "id 'b'" in result.output and len(server.requests) == 3


LEVELS = {dim: list(levels) for dim, (_, levels) in RUBRIC.items()}


def judgment(k):
    return json.dumps({dim: levels[k] for dim, levels in LEVELS.items()})


def test_parse_judgment_and_summary():
    assert parse_judgment(json.loads(judgment(0)))["corruption"] == "OK"
    with pytest.raises(ValueError, match="missing 'sft_suitability'"):
        parse_judgment({d: LEVELS[d][0] for d in list(LEVELS)[:4]})
    with pytest.raises(ValueError, match="corruption='Fine'"):
        parse_judgment(dict(json.loads(judgment(0)), corruption="Fine"))
    rows = summarize([(0.5, json.loads(judgment(0))), (0.5, json.loads(judgment(1))), (0.9, json.loads(judgment(0)))])
    by = {(r["dimension"], r["level"]): r for r in rows}
    assert by[("corruption", "OK")]["0.5"] == 0.5 and by[("corruption", "OK")]["0.9"] == 1.0
    assert by[("sft_suitability", "No")]["0.5"] == 0.0 and len(rows) == 15


def test_judge_pipeline_retries_and_table(tmp_path):
    # keep 0.5 keeps 3 of 6 tokens (deletions 1, 5, 0): " 48/2". Its first reply has a level off the
    # scale (retried); the keep 1.0 text has " sold" -> level 0, the pruned one level 1.
    pruned = "<<<\n 48/2\n>>>"

    def reply(body):
        text = body["messages"][1]["content"]
        if pruned in text and sum(pruned in r["messages"][1]["content"] for r in server.requests) == 1:
            return 200, json.dumps(dict(json.loads(judgment(1)), corruption="Fine"))
        return 200, judgment(0 if "sold" in text else 1)

    with FakeOpenAI([reply]) as server:
        client = llm(server, tmp_path, temperature=0.0)
        out = tmp_path / "judge.jsonl"
        result = run_judge(traces_file(tmp_path), out, [1.0, 0.5], client)
        assert result.judged == 2 and not result.failures
        # trace "b" has the same texts: cache hits. 1.0 once, 0.5 twice (one retry)
        assert len(server.requests) == 3 and all(r["temperature"] == 0.0 for r in server.requests)
        by = {(r["dimension"], r["level"]): r for r in result.rows}
        assert by[("corruption", "OK")]["1"] == 1.0 and by[("corruption", "Minor")]["0.5"] == 1.0
        assert (out.with_name(out.name + ".summary.csv")).read_text().startswith("dimension,level,0.5,1")
        sent = len(server.requests)
        again = run_judge(traces_file(tmp_path), out, [1.0, 0.5], client, resume=True)
        assert again.skipped == 2 and len(server.requests) == sent
