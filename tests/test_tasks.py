"""Dataset tasks: answer checkers on tables of real formats, response splitting, loaders, paper splits."""

from __future__ import annotations

import json

import pytest

from chainprune.chains import tokenize_chain
from chainprune.tasks import TASKS, get_task, load_examples
from chainprune.tasks.base import Carve, boxed_contents, carve_indices
from chainprune.tasks.gsm8k import gold_answer
from chainprune.types import Chain
from conftest import GSM8K, GSM8K_SAMPLE_SIZE, gsm8k_records

gsm8k, math500, mmlu = TASKS["gsm8k"], TASKS["math500"], TASKS["mmlu-pro"]


# ---- GSM8K ----

@pytest.mark.parametrize(
    "response, gold, correct",
    [
        ("48 / 2 = 24. 48 + 24 = 72.\nThe answer is 72.", "72", True),
        ("So she earned $10.\nThe answer is $10.", "10", True),
        ("Total is 1,000 + 234.\nThe answer is 1,234.", "1234", True),
        ("Thus he pays 1234 dollars.\nThe answer is 1234 dollars.", "1234", True),
        ("It costs 12.50 per item.\nThe answer is $12.50.", "12.5", True),
        ("Half of 36 is 18.\nThe answer is 18.00", "18", True),
        ("Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72", True),
        ("Working it out: 5 - 12 = -7.\nThe answer is -7.", "-7", True),
        ("The temperature drops by 3 degrees.\nThe answer is \u22123.", "-3", True),
        ("She has 3 left.\n**Final Answer:** 3", "3", True),
        ("She has 3 left.\nThe final answer is: $\\boxed{3}$", "3", True),
        ("Step 1: 15 - 7 = 8.\nThe answer is 15 - 7 = 8 cookies.", "8", True),
        ("He reads 0.5 of the book.\nThe answer is .5", "0.5", True),
        ("So 48 + 24 = 72.\n\nSo, she sold \\(\\boxed{72}\\) clips in April and May.", "72", True),  # boxed, no marker
        ("So 48 + 24 = 72.\n\nSo, she sold \\(\\boxed{71}\\) clips.", "72", False),
        ("Answer: 42", "42", True),
        ("The answer is 71.", "72", False),
        ("The answer is 7.2", "72", False),
        ("I think the answer is 5 but the answer is 6.", "6", True),  # the last final-answer marker counts
        ("48 + 24 = 72 clips altogether.", "72", False),  # no final-answer line: unparsable
        ("The answer is unknown.", "72", False),  # marker but no number: unparsable
        ("", "72", False),
    ],
)
def test_gsm8k_grades_real_formats(response, gold, correct):
    assert gsm8k.grade(response, gold).correct is correct


def test_a_boxed_result_without_a_final_answer_line_is_cut_at_its_line():
    response = "April: 48. May: 48 / 2 = 24.\n\\[ 48 + 24 = 72 \\]\n\nSo, she sold \\(\\boxed{72}\\) clips altogether."
    graded = gsm8k.grade(response, "72")
    assert graded.reasoning == "April: 48. May: 48 / 2 = 24.\n\\[ 48 + 24 = 72 \\]"
    assert graded.answer == "So, she sold \\(\\boxed{72}\\) clips altogether."
    assert graded.correct and graded.problem is None


@pytest.mark.parametrize(
    "response, problem",
    [
        ("48 + 24 = 72 clips altogether.", "no final-answer line"),
        ("The answer is unknown.", "no answer found in the final-answer line"),
        ("The answer is 72.", None),
    ],
)
def test_unparsable_responses_say_why(response, problem):
    graded = gsm8k.grade(response, "72")
    assert graded.problem == problem
    if problem:
        assert graded.prediction is None and not graded.correct


def test_gsm8k_checker_agrees_with_every_gold_answer_of_the_train_sample():
    """Every record of the shipped GSM8K train sample (its first 500): its own worked solution grades correct,
    rewritten as the prompt's final-answer line (with the gold's commas kept) too, and an off-by-one answer does
    not. (Run over all 7,473 records of the full file when this test was written; all passed.)"""
    records = [json.loads(line) for line in GSM8K.open()]
    assert len(records) == GSM8K_SAMPLE_SIZE
    for record in records:
        solution = record["answer"]
        gold = gold_answer(solution)
        written = solution.rsplit("####", 1)[1].strip()  # as the dataset writes it, e.g. "1,080"
        reasoning = solution.rsplit("####", 1)[0].strip()
        assert gsm8k.grade(solution, gold).correct, solution
        assert gsm8k.grade(f"{reasoning}\nThe answer is {written}.", gold).correct, solution
        assert gsm8k.grade(f"{reasoning}\nThe answer is ${written}.", gold).correct, solution
        assert not gsm8k.grade(f"{reasoning}\nThe answer is {int(gold) + 1}.", gold).correct, solution


def test_gsm8k_gold_needs_the_final_line():
    with pytest.raises(ValueError, match="####"):
        gold_answer("She sold 72 clips.")
    assert gold_answer("x\n#### 1,080") == "1080"


def test_gsm8k_solution_reasoning_is_the_text_before_the_final_line_without_calculator_notes():
    record = {"question": "Q?", "answer": "She sold 48/2 = <<48/2=24>>24 clips.\n48+24 = <<48+24=72>>72\n#### 72"}
    assert gsm8k.solution_reasoning(record) == "She sold 48/2 = 24 clips.\n48+24 = 72"


# ---- MATH ----

@pytest.mark.parametrize(
    "response, gold, correct",
    [
        ("So x = 1/2.\nThe final answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", True),
        ("The final answer is $\\boxed{0.5}$.", "\\frac{1}{2}", True),
        ("The final answer is $\\boxed{\\dfrac12}$.", "\\frac{1}{2}", True),
        ("The final answer is $\\boxed{x = 3}$.", "3", True),
        ("The final answer is $\\boxed{\\sqrt{2}/2}$.", "\\frac{\\sqrt{2}}{2}", True),
        ("The final answer is $\\boxed{(-\\infty, 2]}$.", "(-\\infty,2]", True),
        ("The final answer is $\\boxed{\\{1, 2\\}}$.", "\\{1,2\\}", True),
        ("Therefore\n\\[\\boxed{10\\%}\\]", "10", True),  # no marker: cut at the line of the last \boxed
        ("The final answer is $\\boxed{\\text{(C)}}$.", "\\text{(C)}", True),
        ("**Final Answer**\n\\[\n\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}\n\\]",
         "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True),
        ("The final answer is 12.", "12", True),
        ("The final answer is $\\boxed{\\frac{1}{3}}$.", "\\frac{1}{2}", False),
        ("The final answer is $\\boxed{2\\pi}$.", "\\pi", False),
        ("We get 1/2 in the end.", "\\frac{1}{2}", False),  # no final answer: unparsable
    ],
)
def test_math_grades_equivalent_forms(response, gold, correct):
    assert math500.grade(response, gold).correct is correct


def test_boxed_contents_balances_braces():
    assert boxed_contents("a \\boxed{\\frac{1}{2}} b \\boxed{3}") == ["\\frac{1}{2}", "3"]
    assert boxed_contents("\\boxed{unclosed") == []


def test_math_solution_reasoning_is_the_whole_solution_not_the_answer():
    solution = "Since $2x = 1$, we divide by 2: $x = \\boxed{\\frac{1}{2}}$."
    record = {"problem": "Solve 2x = 1.", "answer": "\\frac{1}{2}", "solution": f"  {solution}\n"}
    assert math500.solution_reasoning(record) == solution
    assert math500.solution_reasoning({"problem": "p", "answer": "1"}) is None


# ---- MMLU-Pro ----

@pytest.mark.parametrize(
    "response, gold, correct",
    [
        ("Let's think step by step. Option B fits.\nThe answer is (B).", "B", True),
        ("The answer is B.", "B", True),
        ("The answer is: **J. 42 kg**", "J", True),
        ("Answer: C", "C", True),
        ("The correct answer is (D) because ...", "D", True),
        ("The final answer is $\\boxed{E}$.", "E", True),
        ("The answer is (A).", "B", False),
        ("I believe it is B.", "B", False),  # no final-answer line
        ("The answer is none of these.", "B", False),
    ],
)
def test_mmlu_pro_grades_letters(response, gold, correct):
    assert mmlu.grade(response, gold).correct is correct


def test_mmlu_pro_rows_carry_no_worked_solution():
    assert mmlu.solution_reasoning is None


def test_mmlu_pro_question_lists_options():
    example = mmlu.to_example({"question": "2+2?", "options": ["3", "4"], "answer": "B", "question_id": 7}, "test", 0)
    assert example.id == "mmlu-pro-7" and example.gold == "B"
    assert example.question.endswith("Options:\nA. 3\nB. 4")
    with pytest.raises(ValueError, match="option letter"):
        mmlu.to_example({"question": "q", "options": ["3", "4"], "answer": "C"}, "test", 0)


# ---- splitting a response for the pruner ----

@pytest.mark.parametrize("name", list(TASKS))
def test_split_record_tokenizes_as_a_chain(name, tiny_tokenizer):
    """reasoning + "\\n" + answer of a graded response is what chains.tokenize_chain scores."""
    task = TASKS[name]
    response = {
        "gsm8k": "Natalia sold 48/2 = 24 clips in May.\nSo 48+24 = 72.\n\nThe answer is 72.",
        "math500": "Natalia sold 48/2 = 24 clips.\nThe final answer is $\\boxed{72}$.",
        "mmlu-pro": "Natalia sold 48/2 = 24 clips.\n**The answer is (B).**",
    }[name]
    graded = task.grade(response, {"gsm8k": "72", "math500": "72", "mmlu-pro": "B"}[name])
    assert graded.correct and graded.reasoning.startswith("Natalia") and graded.reasoning.endswith(".")
    assert "answer" in graded.answer.lower() and graded.answer.startswith(("The", "**"))
    ids = tokenize_chain(tiny_tokenizer, Chain("x", "Q?", graded.reasoning, graded.answer, task.system_prompt))
    assert "".join(ids.reasoning_texts) == graded.reasoning
    assert tiny_tokenizer.decode(ids.answer_ids).startswith("\n" if graded.reasoning.endswith(".") else "")


@pytest.mark.parametrize(
    "response, reasoning, answer",
    [
        ("A.\nB.\nThe answer is 10.", "A.\nB.", "The answer is 10."),
        ("A.\n\n**The answer is 10.**", "A.", "**The answer is 10.**"),
        ("A. So the answer is 10.", "A. So", "the answer is 10."),
        ("A.\nThe answer is 10.\n#### 10", "A.", "The answer is 10.\n#### 10"),  # a block of answer lines
        ("A.\nThe answer is 5.\nWait: 4+6 = 10.\nThe answer is 10.", "A.\nThe answer is 5.\nWait: 4+6 = 10.", "The answer is 10."),
        ("## Final Answer\nThe final answer is 10.", "", "## Final Answer\nThe final answer is 10."),
        ("A.\nAnswer: 10\nHope this helps!", "A.", "Answer: 10\nHope this helps!"),
    ],
)
def test_response_split(response, reasoning, answer):
    assert gsm8k.split_response(response) == (reasoning, answer)


# ---- loaders ----

def full_size_gsm8k(tmp_path):
    """A file the size of GSM8K's train split (7,473 rows): the shipped sample's records repeated in order."""
    lines = GSM8K.read_text().splitlines(keepends=True)
    path = tmp_path / "train.jsonl"
    path.write_text("".join(lines[i % len(lines)] for i in range(7473)))
    return path


def test_local_gsm8k_file_gives_the_paper_split_sizes(tmp_path):
    task = get_task("gsm8k")
    full = full_size_gsm8k(tmp_path)
    train, errors = load_examples(task, "train", full)
    dev, _ = load_examples(task, "dev", full)
    assert not errors and (len(train), len(dev)) == (6973, 500)
    assert not {e.id for e in train} & {e.id for e in dev}
    records = gsm8k_records(3)
    first = next(e for e in train + dev if e.id == "gsm8k-train-0")
    assert first.question == records[0]["question"] and first.gold == "72"
    again, _ = load_examples(task, "dev", full)
    other, _ = load_examples(task, "dev", full, seed=1)
    assert [e.id for e in again] == [e.id for e in dev] != [e.id for e in other]


def test_carve_is_a_seeded_partition():
    parts = carve_indices(12032, Carve({"dev": 800, "test": 1232}, "train"), seed=0)
    assert [len(parts[k]) for k in ("dev", "test", "train")] == [800, 1232, 10000]
    assert sorted(parts["dev"] + parts["test"] + parts["train"]) == list(range(12032))
    with pytest.raises(ValueError, match="only"):
        carve_indices(10, Carve({"dev": 11}, "train"), seed=0)


def test_bad_rows_name_their_line_and_the_rest_load(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    rows = [
        json.dumps({"question": "q1", "answer": "x\n#### 1"}),
        json.dumps({"question": "q2"}),
        "{not json",
        json.dumps({"question": "q4", "answer": "no final line"}),
        "",
        json.dumps({"question": "q6", "answer": "#### 6"}),
    ]
    path.write_text("\n".join(rows) + "\n")
    examples, errors = load_examples(get_task("gsm8k"), "all", path)
    assert [e.gold for e in examples] == ["1", "6"]
    messages = [str(e) for e in errors]
    assert "line 2 of gsm8k.jsonl: missing field 'answer'" in messages[0]
    assert "line 3 of gsm8k.jsonl: not valid JSON" in messages[1]
    assert "line 4 of gsm8k.jsonl" in messages[2] and "####" in messages[2]


def test_parquet_and_limit(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = gsm8k_records(5)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "train.parquet")
    examples, errors = load_examples(get_task("gsm8k"), "all", tmp_path / "train.parquet", limit=3)
    assert not errors and [e.question for e in examples] == [r["question"] for r in records[:3]]
    pq.write_table(pa.Table.from_pylist([{"question": "q"}]), tmp_path / "bad.parquet")
    _, errors = load_examples(get_task("gsm8k"), "all", tmp_path / "bad.parquet")
    assert "row 1 of bad.parquet: missing field 'answer'" in str(errors[0])


def test_mmlu_pro_and_math_local_files(tmp_path):
    mmlu_file = tmp_path / "mmlu.jsonl"
    mmlu_file.write_text(json.dumps({"question_id": 3, "question": "q", "options": ["a", "b", "c"], "answer": "C"}) + "\n")
    (example,), _ = load_examples(get_task("mmlu-pro"), "all", mmlu_file)
    assert example.gold == "C" and "C. c" in example.question
    math_file = tmp_path / "math.jsonl"
    math_file.write_text(
        json.dumps({"problem": "p", "solution": "so $\\boxed{\\frac{1}{2}}$", "unique_id": "test/algebra/1.json"}) + "\n"
        + json.dumps({"solution": "x"}) + "\n"
    )
    (example,), errors = load_examples(get_task("math"), "all", math_file)
    assert example.id == "test/algebra/1.json" and example.gold == "\\frac{1}{2}"
    assert "line 2 of math.jsonl: missing field 'problem'" in str(errors[0])


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="did you mean 'gsm8k'"):
        get_task("gsm8")
    with pytest.raises(ValueError, match="choose one of train, dev, test, all"):
        load_examples(get_task("gsm8k"), "validation", GSM8K)
    with pytest.raises(ValueError, match="does not exist"):
        load_examples(get_task("gsm8k"), "all", GSM8K.with_name("nope.jsonl"))


def test_hub_loading_carves_the_original_and_passes_paper_splits_through(monkeypatch):
    """No network: `datasets.load_dataset` is replaced by a fake that records what was asked."""
    import datasets

    asked = []
    sample = gsm8k_records(GSM8K_SAMPLE_SIZE)
    records = [sample[i % len(sample)] for i in range(600)]

    def fake_load_dataset(path, config=None, split=None):
        asked.append((path, config, split))
        if path == "offline/none":
            raise ConnectionError("no network")
        return records

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = get_task("gsm8k")
    dev, _ = load_examples(task, "dev", limit=None)
    train, _ = load_examples(task, "train")
    assert asked[:2] == [("openai/gsm8k", "main", "train")] * 2 and (len(dev), len(train)) == (500, 100)
    test, _ = load_examples(task, "test", hub_dataset="paper")
    assert asked[-1] == ("iamjanvijay/gsm8k", None, "test") and len(test) == 600
    with pytest.raises(ValueError, match="--data-file"):
        load_examples(task, "test", hub_dataset="offline/none")
