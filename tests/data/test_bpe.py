"""BpeTokenizer: learned by sentencepiece, then used from its piece list alone, encoding as it does."""

from __future__ import annotations

import io
import random

import pytest

from asr_kd.data.bpe import BpeTokenizer
from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.data.vocabulary import load_tokenizer, tokenizer_from_tokens

LETTERS = "abcdefghijklmnopqrstuvwxyz'"


def corpus(n: int = 2000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 9))) for _ in range(200)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 10))) for _ in range(n)]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return corpus()


@pytest.fixture(scope="module")
def tokenizer(texts) -> BpeTokenizer:
    return BpeTokenizer.train(texts, vocab_size=200)


def test_layout_blank_unk_then_pieces(tokenizer, texts):
    assert tokenizer.tokens[:2] == ["<blk>", "<unk>"] and len(tokenizer) == 200
    assert set("".join(texts).replace(" ", "")) <= set(tokenizer.tokens)  # every character is a piece
    assert BpeTokenizer.train(texts, vocab_size=200).tokens == tokenizer.tokens  # deterministic


def test_encoding_matches_sentencepiece(tokenizer, texts):
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type="bpe", vocab_size=200,
        character_coverage=1.0, normalization_rule_name="identity", pad_id=0, pad_piece="<blk>",
        unk_id=1, unk_piece="<unk>", bos_id=-1, eos_id=-1, num_threads=1, minloglevel=2,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    unseen = corpus(300, seed=1)  # other words made of the same letters
    for text in texts[:300] + unseen:
        assert tokenizer.encode(text) == sp.encode(text), text
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_small_corpus_gets_fewer_pieces_than_asked():
    tokenizer = BpeTokenizer.train(["one two", "two three"], vocab_size=500)
    assert len(tokenizer) < 500
    assert tokenizer.decode(tokenizer.encode("three one")) == "three one"


def test_unknown_character_names_it(tokenizer):
    with pytest.raises(KeyError, match=r"character '7' of 'abc 7' is not in the vocabulary"):
        tokenizer.encode("abc 7")


def test_decode_skips_blank_and_unk_and_joins_words(tokenizer):
    ids = tokenizer.encode("ab cd")
    assert tokenizer.decode([0, *ids[:1], 1, 0, *ids[1:]]) == "ab cd"


def test_the_piece_list_is_the_whole_tokenizer(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tokens.txt")
    for again in (load_tokenizer(tmp_path / "tokens.txt"), tokenizer_from_tokens(list(tokenizer.tokens))):
        assert type(again) is BpeTokenizer and again.tokens == tokenizer.tokens
        assert again.encode("abc def") == tokenizer.encode("abc def")
    chars = CharTokenizer.from_texts(["ab c"])
    chars.save(tmp_path / "chars.txt")
    assert type(load_tokenizer(tmp_path / "chars.txt")) is CharTokenizer
    assert load_tokenizer(tmp_path / "chars.txt").tokens == ["<blk>", " ", "a", "b", "c"]
