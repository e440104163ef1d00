"""Chains are tokenized once, in context: the three parts concatenate to the whole conversation's tokens."""

import pytest

from chainprune.chains import ChainError, render, tokenize_chain
from chainprune.types import Chain

from conftest import gsm8k_records, make_tokenizer

CHAINS = [
    Chain("a", "How many clips?", "Natalia sold 48/2 = 24 clips in May.", "The answer is 72."),
    Chain("b", "Weng earns $12 an hour. How much for 50 minutes?", "Weng earns 12/60 = $0.2 per minute.\nSo 0.2 x 50 = $10.", "The answer is 10.", "Be brief."),
    Chain("c", "Repeat: the answer is 72.", "the answer is 72.", "The answer is 72."),
]


def whole_conversation_ids(tokenizer, chain):
    text, _, templated = render(tokenizer, chain)
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.id)
def test_parts_concatenate_to_whole_conversation(tiny_tokenizer, chain):
    ids = tokenize_chain(tiny_tokenizer, chain)
    assert ids.input_ids == whole_conversation_ids(tiny_tokenizer, chain)
    # the chat template's own tokenization agrees too
    messages = ([{"role": "system", "content": chain.system}] if chain.system else []) + [
        {"role": "user", "content": chain.question},
        {"role": "assistant", "content": chain.reasoning + "\n" + chain.answer},
    ]
    assert ids.input_ids == list(tiny_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
    # the reasoning tokens are exactly the reasoning text, and nothing else
    assert "".join(ids.reasoning_texts) == chain.reasoning
    assert tiny_tokenizer.decode(ids.reasoning_ids) == chain.reasoning
    assert tiny_tokenizer.decode(ids.answer_ids).startswith("\n" + chain.answer)


def test_reasoning_is_found_in_assistant_turn_not_in_question(tiny_tokenizer):
    ids = tokenize_chain(tiny_tokenizer, CHAINS[2])
    assert tiny_tokenizer.decode(ids.prompt_ids).endswith("assistant\n")


def test_plain_template_without_chat_template():
    tokenizer = make_tokenizer(chat_template=None)
    chain = CHAINS[1]
    ids = tokenize_chain(tokenizer, chain)
    assert ids.input_ids == whole_conversation_ids(tokenizer, chain)
    assert tokenizer.decode(ids.prompt_ids) == "Be brief.\n\nQuestion: " + chain.question + "\nAnswer: "
    assert tokenizer.decode(ids.answer_ids) == "\n" + chain.answer + "<|endoftext|>"


def test_empty_reasoning_gives_no_reasoning_tokens(tiny_tokenizer):
    ids = tokenize_chain(tiny_tokenizer, Chain("e", "Q?", "", "The answer is 3."))
    assert ids.reasoning_ids == []
    assert tiny_tokenizer.decode(ids.answer_ids) == "The answer is 3.<|im_end|>\n"


def test_token_straddling_the_reasoning_end_belongs_to_the_answer(tiny_tokenizer):
    # A vocabulary whose only merge is "." + "\n": the reasoning's final "." fuses with the joining newline.
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<|im_start|>", "<|im_end|>", "a", "b", "\n", ".", ".\n", "u", "s", "e", "r", "t", "n", "i", "o", "Q", "?", "A"])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[(".", "\n")]))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tok.chat_template = tiny_tokenizer.chat_template
    ids = tokenize_chain(tok, Chain("s", "Q?", "ab.", "A"))
    assert tok.convert_ids_to_tokens(ids.reasoning_ids) == ["a", "b"]
    assert tok.convert_ids_to_tokens(ids.answer_ids)[0] == ".\n"
    assert ids.input_ids == whole_conversation_ids(tok, Chain("s", "Q?", "ab.", "A"))


def test_template_that_rewrites_content_is_an_error(tiny_tokenizer):
    tok = make_tokenizer(chat_template="{% for m in messages %}{{ m['content'] | upper }}\n{% endfor %}")
    with pytest.raises(ChainError, match="altered"):
        tokenize_chain(tok, Chain("x", "q?", "some reasoning", "The answer is 1."))


@pytest.mark.slow
def test_bundled_tokenizer_on_real_gsm8k_chains(bundled_pruner):
    tokenizer = bundled_pruner.tokenizer
    for record in gsm8k_records(50):
        reasoning, answer = record["answer"].split("####")
        chain = Chain("g", record["question"], reasoning.strip(), f"The answer is {answer.strip()}.")
        ids = tokenize_chain(tokenizer, chain)
        assert ids.input_ids == whole_conversation_ids(tokenizer, chain)
        assert "".join(ids.reasoning_texts) == chain.reasoning
        assert ids.prompt_ids[:1] == tokenizer.convert_tokens_to_ids(["<|im_start|>"])


def test_template_without_a_system_turn_gets_the_system_text_in_the_user_turn():
    """Some chat templates (Gemma's) raise on a system message: the system text then opens the user turn,
    as it does for generation and distillation, and the parts still concatenate to the conversation."""
    rejecting = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer = make_tokenizer(chat_template=rejecting)
    chain = CHAINS[1]
    ids = tokenize_chain(tokenizer, chain)
    assert ids.input_ids == whole_conversation_ids(tokenizer, chain)
    assert tokenizer.decode(ids.prompt_ids).startswith(f"<|im_start|>user\n{chain.system}\n\n{chain.question}")
    assert tokenizer.decode(ids.reasoning_ids) == chain.reasoning
