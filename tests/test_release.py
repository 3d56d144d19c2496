"""Release loading: matched-std vocab extension, old rows bit-identical, clear errors, safe loading."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from amh.xtts.release import (build_xtts, check_vocab_extends, extend_text_rows, load_checkpoint_state,
                              resolve_release)

ETHIOPIC = [chr(c) for c in range(0x1200, 0x1200 + 150)]


def _extended_vocab(base_vocab, out, tokens):
    data = json.loads(base_vocab.read_text())
    vocab = data["model"]["vocab"]
    for tok in tokens:
        vocab[tok] = len(vocab)
    out.write_text(json.dumps(data, ensure_ascii=False))
    return out


def test_matched_std_rows_and_bit_identical_old_rows(tiny_release, tmp_path):
    vocab = _extended_vocab(tiny_release / "vocab.json", tmp_path / "v.json", ETHIOPIC + ["[am]"])
    base = load_checkpoint_state(tiny_release / "model.pth")
    xtts, resize = build_xtts(tiny_release, vocab, seed=3)
    old = resize.checkpoint_rows
    assert resize.vocab_rows == old + len(ETHIOPIC) + 1
    sd = xtts.gpt.state_dict()
    for key in ("text_embedding.weight", "text_head.weight"):
        pretrained = base["gpt." + key].float()
        now = sd[key]
        assert torch.equal(now[:old], pretrained)  # bit-identical
        new_std = now[old:].std().item()
        assert abs(new_std - pretrained.std().item()) / pretrained.std().item() < 0.10
        assert abs(now[old:].mean().item()) < 0.01
    assert torch.equal(sd["text_head.bias"][:old], base["gpt.text_head.bias"].float())
    assert torch.count_nonzero(sd["text_head.bias"][old:]) == 0
    assert resize.new_std["gpt.text_embedding.weight"] == pytest.approx(resize.pretrained_std["gpt.text_embedding.weight"], rel=0.1)


def test_std_factor_scales_new_rows():
    state = {"gpt.text_embedding.weight": torch.randn(50, 16) * 0.02, "gpt.text_head.weight": torch.randn(50, 16) * 0.02,
             "gpt.text_head.bias": torch.zeros(50)}
    resize = extend_text_rows(state, 450, std_factor=0.5)
    assert resize.new_std["gpt.text_head.weight"] == pytest.approx(0.01, rel=0.1)


def test_same_vocab_is_no_resize(tiny_release):
    _, resize = build_xtts(tiny_release, tiny_release / "vocab.json")
    assert resize.added == 0


def test_moved_ids_are_a_clear_error(tiny_release, tmp_path):
    data = json.loads((tiny_release / "vocab.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    (tmp_path / "v.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="changed id"):
        check_vocab_extends(tiny_release / "vocab.json", tmp_path / "v.json")


def test_shrinking_is_refused():
    state = {"gpt.text_embedding.weight": torch.zeros(10, 4), "gpt.text_head.weight": torch.zeros(10, 4),
             "gpt.text_head.bias": torch.zeros(10)}
    with pytest.raises(ValueError, match="never shrink"):
        extend_text_rows(state, 8)


def test_missing_release_file_names_it(tiny_release, tmp_path):
    partial = tmp_path / "rel"
    shutil.copytree(tiny_release, partial)
    (partial / "dvae.pth").unlink()
    with pytest.raises(FileNotFoundError, match="missing dvae.pth"):
        resolve_release(str(partial))
    with pytest.raises(FileNotFoundError, match="neither a directory nor a Hub repo id"):
        resolve_release("./no/such/dir")


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('executed')",))

    torch.save({"config": Evil(), "model": {"gpt.x": torch.zeros(1)}}, tmp_path / "model.pth")
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        load_checkpoint_state(tmp_path / "model.pth")


def test_trainer_checkpoint_prefixes_are_normalised(tmp_path):
    torch.save({"model": {"xtts.gpt.a": torch.ones(1), "dvae.b": torch.ones(1), "xtts.mel_stats": torch.ones(80)}},
               tmp_path / "model.pth")
    assert set(load_checkpoint_state(tmp_path / "model.pth")) == {"gpt.a", "mel_stats"}
