"""Language-model data: documents read and validated, packed into blocks, BERT-style masking."""

import pytest
import torch
from transformers import AutoTokenizer

from tuneforge.assets import resolve_model
from tuneforge.config import DataConfig, LMConfig
from tuneforge.data.lm import (
    CausalCollator,
    MaskingCollator,
    load_documents,
    pack_causal,
    pack_masked,
    split_blocks,
)
from tuneforge.errors import DataError


@pytest.fixture(scope="module")
def gpt_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))


@pytest.fixture(scope="module")
def bert_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))


def write_texts(folder, count, words=200):
    folder.mkdir()
    for i in range(count):
        (folder / f"doc{i:02d}.txt").write_text(" ".join(f"word{i}_{j}" for j in range(words)), encoding="utf-8")
    return folder


def test_causal_blocks_keep_every_token_in_order_with_separators(gpt_tokenizer):
    texts = ["To be, or not to be.", "That is the question."]
    blocks = pack_causal(texts, gpt_tokenizer, block_size=4)
    stream = [t for block in blocks.input_ids for t in block]
    first = gpt_tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    second = gpt_tokenizer(texts[1], add_special_tokens=False)["input_ids"]
    assert stream == first + [gpt_tokenizer.eos_token_id] + second + [gpt_tokenizer.eos_token_id]
    assert all(len(block) == 4 for block in blocks.input_ids[:-1])


def test_causal_labels_ignore_padding_only(gpt_tokenizer):
    batch = CausalCollator(0)([{"input_ids": [5, 6, 7], "index": 0}, {"input_ids": [8], "index": 1}])
    assert batch["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]


def test_masked_blocks_are_wrapped_in_cls_and_sep(bert_tokenizer):
    blocks = pack_masked(["a short sentence about films"] * 5, bert_tokenizer, block_size=8)
    for block, starts in zip(blocks.input_ids, blocks.word_starts, strict=True):
        assert block[0] == bert_tokenizer.cls_token_id and block[-1] == bert_tokenizer.sep_token_id
        assert len(block) == len(starts) <= 8


def test_masking_follows_80_10_10(bert_tokenizer):
    ids = bert_tokenizer(["the quick brown fox jumps over the lazy dog " * 50], add_special_tokens=True)["input_ids"]
    items = [{"input_ids": ids[0][:400], "index": i} for i in range(50)]
    torch.manual_seed(0)
    batch = MaskingCollator(bert_tokenizer, LMConfig())(items)
    original = torch.tensor([item["input_ids"] for item in items])
    picked = batch["labels"] != -100
    assert 0.13 < picked.float().mean() < 0.17
    assert (batch["labels"][picked] == original[picked]).all()  # labels are the original tokens
    assert not picked[:, 0].any()  # [CLS] is never picked
    as_mask = (batch["input_ids"] == bert_tokenizer.mask_token_id)[picked].float().mean()
    unchanged = (batch["input_ids"] == original)[picked].float().mean()
    assert 0.75 < as_mask < 0.85 and 0.06 < unchanged < 0.15
    assert (batch["input_ids"][~picked] == original[~picked]).all()  # nothing else changes


def test_whole_word_masking_picks_all_pieces_of_a_word(bert_tokenizer):
    blocks = pack_masked(["unbelievably extraordinary tokenization " * 40], bert_tokenizer, block_size=128)
    items = [{**blocks[i], "index": i} for i in range(len(blocks))]
    torch.manual_seed(1)
    batch = MaskingCollator(bert_tokenizer, LMConfig(whole_word_mask=True))(items)
    for row, item in enumerate(items):
        picked = (batch["labels"][row] != -100).tolist()
        word = -1
        by_word: dict[int, set[bool]] = {}
        for position, start in enumerate(item["word_starts"]):
            word += start
            if item["input_ids"][position] not in bert_tokenizer.all_special_ids:
                by_word.setdefault(word, set()).add(picked[position])
        assert all(len(states) == 1 for states in by_word.values())  # a word is all picked or all kept
        assert any(True in states for states in by_word.values())


def test_fixed_seed_masks_depend_only_on_the_block(bert_tokenizer):
    items = [{"input_ids": list(range(1000, 1064)), "index": i} for i in range(4)]
    collator = MaskingCollator(bert_tokenizer, LMConfig(), fixed_seed=3)
    together = collator(items)["labels"]
    alone = torch.cat([collator([item])["labels"] for item in items])
    assert torch.equal(together, alone)


def test_documents_from_a_folder_are_split_whole(tmp_path):
    folder = write_texts(tmp_path / "corpus", 20)
    documents = load_documents(DataConfig(dataset=None, train_file=str(folder)), seed=0)
    assert not documents.split_blocks
    assert (len(documents.train), len(documents.validation), len(documents.test)) == (16, 2, 2)
    held_out = {d.source for d in documents.validation + documents.test}
    assert not held_out & {d.source for d in documents.train}


def test_one_text_file_is_split_by_blocks(tmp_path, gpt_tokenizer):
    path = tmp_path / "one.txt"
    path.write_text("word " * 2000, encoding="utf-8")
    documents = load_documents(DataConfig(dataset=None, train_file=str(path)), seed=0)
    assert documents.split_blocks and len(documents.train) == 1
    blocks = pack_causal([documents.train[0].text], gpt_tokenizer, 64)
    train, validation, test = split_blocks(blocks, [0.8, 0.1, 0.1], 0)
    assert len(validation) >= 1 and len(test) >= 1 and len(train) > len(validation)


def test_bad_documents_are_named_then_skippable(tmp_path):
    folder = write_texts(tmp_path / "corpus", 12)
    (folder / "latin1.txt").write_bytes("caf\xe9 au lait\nencore".encode("latin-1"))
    (folder / "empty.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        load_documents(DataConfig(dataset=None, train_file=str(folder)), seed=0)
    message = str(error.value)
    assert "empty.txt" in message and "latin1.txt" not in message  # a Windows-1252 file is decoded, not a problem
    documents = load_documents(DataConfig(dataset=None, train_file=str(folder), on_bad_rows="skip"), seed=0)
    assert documents.skipped_rows == 1
    texts = [d.text for split in (documents.train, documents.validation, documents.test) for d in split]
    assert len(texts) == 13 and any(text.startswith("café au lait") for text in texts)


def test_text_column_of_a_table(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(f'{{"body": "note number {i}"}}\n' for i in range(30)) + '{"body": ""}\n')
    with pytest.raises(DataError, match="notes.jsonl, line 31"):
        load_documents(DataConfig(dataset=None, train_file=str(path), text_column="body"), seed=0)
    with pytest.raises(DataError, match="text column 'text' not found"):
        load_documents(DataConfig(dataset=None, train_file=str(path)), seed=0)


def test_shakespeare_is_whole_plays():
    documents = load_documents(DataConfig(dataset="shakespeare"), seed=0)
    titles = [d.text.splitlines()[0] for d in documents.train + documents.validation + documents.test]
    assert len(titles) == 42 and any("HAMLET" in t.upper() for t in titles)
