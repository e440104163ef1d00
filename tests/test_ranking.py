"""Rankers on tiny seeded models, each pinned against a brute-force reference (float64)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model

from chainprune.chains import tokenize_chain
from chainprune.ranking import RANKERS, get_ranker, order_by_importance
from chainprune.ranking.h2o import chain_received_attention
from chainprune.ranking.tokenskip import TokenClassifier, spread_to_tokens, token_keep_probs, tokenskip, words
from chainprune.types import Chain

CHAIN = Chain(
    id="c",
    question="Natalia sold clips to 48 of her friends in April. How many in May?",
    reasoning="Natalia sold 48/2 = 24 clips in May. So 48+24 = 72 clips altogether.",
    answer="The answer is 72.",
)


@pytest.fixture(scope="module")
def ids(tiny_tokenizer):
    return tokenize_chain(tiny_tokenizer, CHAIN)


def test_order_by_importance_breaks_ties_by_position():
    assert order_by_importance([0.5, 0.1, 0.5, 0.1, 0.9]) == [1, 3, 0, 2, 4]


def test_unknown_method_names_the_known_ones():
    with pytest.raises(ValueError, match=r"did you mean 'h2o'.*uniform"):
        get_ranker("h20")


def test_every_ranker_returns_a_permutation(ids, tiny_pruner):
    for name in ("uniform", "surprisal", "h2o"):
        order = RANKERS[name](ids, tiny_pruner.model, seed=1).deletion_order
        assert sorted(order) == list(range(len(ids.reasoning_ids))), name


def test_uniform_is_seeded(ids):
    a, b, c = (RANKERS["uniform"](ids, None, seed=s).deletion_order for s in (3, 3, 4))
    assert a == b and a != c and a != sorted(a)


def test_surprisal_equals_minus_logp_from_a_full_forward(ids, tiny_pruner):
    model = tiny_pruner.model
    p, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    with torch.no_grad():
        logits = model(torch.tensor([ids.input_ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    expected = [-logp[p + k - 1, ids.reasoning_ids[k]].item() for k in range(m)]
    ranking = RANKERS["surprisal"](ids, model)
    torch.testing.assert_close(torch.tensor(ranking.scores), torch.tensor(expected), rtol=0, atol=1e-10)
    assert ranking.deletion_order == sorted(range(m), key=lambda k: (expected[k], k))
    assert len(set(expected)) > m // 2  # the order is not decided by ties


def brute_force_received(model, input_ids):
    """Sum over layers, heads and later queries of eager attention weights (output_attentions)."""
    with torch.no_grad():
        out = model(torch.tensor([input_ids]), output_attentions=True)
    total = torch.zeros(len(input_ids), dtype=torch.float64)
    for layer in out.attentions:  # (1, H, T, T)
        weights = layer[0].double().tril(-1)  # strictly later queries only
        total += weights.sum(dim=(0, 1))
    return total


@pytest.mark.parametrize("layers", [1, 3])
def test_h2o_equals_summed_eager_attention(ids, tiny_tokenizer, layers):
    model = make_model(len(tiny_tokenizer), seed=7, layers=layers)
    assert model.config._attn_implementation == "sdpa"
    fast = chain_received_attention(model, ids.input_ids)
    model.set_attn_implementation("eager")
    expected = brute_force_received(model, ids.input_ids)
    # transformers' eager attention takes its softmax in float32 even for a float64 model, so the reference
    # weights carry float32 rounding (~1e-8 relative); the scores themselves are float64.
    torch.testing.assert_close(fast, expected, rtol=1e-6, atol=1e-9)
    # Under eager attention the model hands its own float mask to the attention function instead of None:
    # the same numbers, to float64 rounding for one layer (deeper layers see eager's float32-rounded outputs).
    tol = 1e-12 if layers == 1 else 1e-8
    torch.testing.assert_close(chain_received_attention(model, ids.input_ids), fast, rtol=tol, atol=tol)
    # A token gets attention from every later token: the first one receives the most in total.
    assert expected.argmax() == 0


def test_h2o_ranks_reasoning_positions_and_restores_attention(ids, tiny_pruner):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    ranking = RANKERS["h2o"](ids, tiny_pruner.model)
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == before
    p, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    received = chain_received_attention(tiny_pruner.model, ids.input_ids)[p : p + m]
    assert ranking.scores == received.tolist()
    assert ranking.deletion_order == order_by_importance(received.tolist())


def test_greedy_ranker_matches_prune_chain(tiny_pruner):
    from chainprune.pruning import prune_chain

    chain = Chain("g", "How many?", "Betty has 100 / 2 = $50.", "The answer is 50.")
    ids = tokenize_chain(tiny_pruner.tokenizer, chain)
    n = len(ids.reasoning_ids)
    order = RANKERS["greedy"](ids, tiny_pruner.model).deletion_order
    trace = prune_chain(tiny_pruner, chain, keep=[1 / n], engine="naive")
    assert sorted(order) == list(range(n))
    assert order[: n - 1] == trace.deletion_order


# ---- TokenSkip (LLMLingua-2 classifier) ----


def make_xlmr_tokenizer():
    """A tiny sentencepiece-style (Metaspace + Unigram) tokenizer with XLM-R's special tokens, trained offline."""
    from conftest import CORPUS
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    special = ["<s>", "<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(CORPUS * 3, trainers.UnigramTrainer(vocab_size=150, special_tokens=special, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", unk_token="<unk>",
    )


def make_classifier(max_positions: int = 130, seed: int = 0) -> TokenClassifier:
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    tok = make_xlmr_tokenizer()
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=max_positions, num_labels=2, pad_token_id=tok.pad_token_id,
    )
    model = XLMRobertaForTokenClassification(config).to(torch.float64).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30)  # spread the probabilities so the order is not decided by ties
    return TokenClassifier(model=model, tokenizer=tok, name="tiny-xlmr")


def test_words_are_whitespace_runs():
    assert words(" 48/2 = 24\nclips.") == [(1, 5), (6, 7), (8, 10), (11, 17)]


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([(0, 3), (3, 4), (4, 8)], [0.2, 0.2, 0.9]),  # "abc" " " "defg": whitespace takes the lower neighbour
        ([(0, 2), (2, 5)], [0.2, 0.9]),  # "ab" | "c d": a token over two words takes the higher
        ([(0, 8)], [0.9]),
    ],
)
def test_word_probabilities_spread_to_pruner_tokens(spans, expected):
    word_probs = [(0, 3, 0.2), (4, 8, 0.9)]  # "abc defg"
    if spans == [(0, 2), (2, 5)]:
        word_probs = [(0, 3, 0.2), (4, 5, 0.9)]
    assert spread_to_tokens(spans, word_probs) == expected


def test_tokenskip_scores_are_word_means_of_a_plain_forward(ids):
    clf = make_classifier()
    text = "".join(ids.reasoning_texts)
    enc = clf.tokenizer(text, return_offsets_mapping=True, return_tensors="pt")  # adds <s> ... </s> itself
    with torch.no_grad():
        p_keep = torch.softmax(clf.model(input_ids=enc["input_ids"]).logits[0], dim=-1)[:, 1]
    offsets = enc["offset_mapping"][0].tolist()
    word_p = {}
    for a, b in words(text):
        inside = [p_keep[t].item() for t, (s, e) in enumerate(offsets) if s < b and e > a and e > s]
        word_p[(a, b)] = sum(inside) / len(inside)
    ranking = tokenskip(ids, clf)
    pos = 0
    for k, piece in enumerate(ids.reasoning_texts):
        a, b = pos, pos + len(piece)
        pos = b
        hit = [p for (s, e), p in word_p.items() if s < b and e > a]
        if hit:
            assert ranking.scores[k] == pytest.approx(max(hit), abs=1e-12)
    assert ranking.deletion_order == order_by_importance(ranking.scores)
    assert len(set(ranking.scores)) >= len(word_p) // 2


def test_tokenskip_reads_long_texts_in_windows():
    clf = make_classifier(max_positions=12)  # 10 usable positions: 8 tokens per window plus <s> </s>
    text = "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May."
    probs, offsets = token_keep_probs(clf, text)
    assert len(probs) == len(offsets) > 8
    # The first window is a plain forward of its 8 tokens between <s> and </s>.
    first = clf.tokenizer(text, add_special_tokens=False)["input_ids"][:8]
    row = torch.tensor([[clf.tokenizer.cls_token_id, *first, clf.tokenizer.sep_token_id]])
    with torch.no_grad():
        expected = torch.softmax(clf.model(input_ids=row).logits[0, 1:-1], dim=-1)[:, 1]
    assert probs[:8] == pytest.approx(expected.tolist(), abs=1e-12)
