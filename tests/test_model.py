import pytest
import torch
import torch.nn.functional as F

from model import GPT, GPTConfig, explicit_attention


def tiny(**kw):
    cfg = dict(n_layer=2, n_head=2, n_embd=16, d_ff=32, vocab_size=11, block_size=8)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg)).eval()


def test_output_shapes_and_loss():
    model = tiny()
    idx = torch.randint(0, 11, (3, 8))
    logits, loss = model(idx)
    assert logits.shape == (3, 8, 11) and loss is None
    logits, loss = model(idx, targets=idx)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_causal_later_tokens_do_not_change_earlier_logits():
    model = tiny()
    idx = torch.randint(0, 11, (1, 8))
    changed = idx.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 11
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def test_appended_pads_change_nothing_for_real_tokens():
    model = tiny()
    real = torch.randint(2, 11, (1, 5))
    padded = torch.cat([real, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    a, _ = model(real)
    b, _ = model(padded, attention_mask=mask)
    assert torch.allclose(a[0], b[0, :5], atol=1e-5)


def test_left_padding_with_mask_changes_nothing_for_real_tokens():
    model = tiny()
    real = torch.randint(2, 11, (1, 5))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), real], dim=1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    a, _ = model(real)
    b, _ = model(padded, attention_mask=mask)
    assert torch.allclose(a[0], b[0, 3:], atol=1e-5)
    assert torch.isfinite(b).all()


def test_pad_content_is_invisible():
    """Whatever token sits at a masked position, real positions see the same thing."""
    model = tiny()
    x = torch.randint(2, 11, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, 6:] = False
    y = x.clone()
    y[:, 6:] = 7
    a, _ = model(x, attention_mask=mask)
    b, _ = model(y, attention_mask=mask)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)


def test_loss_counts_only_masked_positions():
    model = tiny()
    idx = torch.randint(0, 11, (2, 8))
    targets = torch.randint(0, 11, (2, 8))
    loss_mask = torch.zeros(2, 8, dtype=torch.bool)
    loss_mask[0, 3] = loss_mask[1, 6] = True
    logits, loss = model(idx, targets, loss_mask=loss_mask)
    logp = torch.log_softmax(logits, -1)
    expected = -(logp[0, 3, targets[0, 3]] + logp[1, 6, targets[1, 6]]) / 2
    assert torch.allclose(loss, expected, atol=1e-5)
    other = targets.clone()
    other[~loss_mask] = (other[~loss_mask] + 1) % 11  # change every unmasked target
    _, loss2 = model(idx, other, loss_mask=loss_mask)
    assert torch.allclose(loss, loss2)


def test_loss_never_counts_pads_even_if_loss_mask_says_so():
    model = tiny()
    idx = torch.randint(0, 11, (1, 8))
    targets = torch.randint(0, 11, (1, 8))
    attention = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    everywhere = torch.ones(1, 8, dtype=torch.bool)
    _, a = model(idx, targets, loss_mask=everywhere, attention_mask=attention)
    _, b = model(idx, targets, loss_mask=attention, attention_mask=attention)
    assert torch.allclose(a, b)


def test_weight_tying_and_d_ff():
    model = tiny(tie_weights=True, d_ff=24)
    assert model.head.weight is model.tok_emb.weight
    assert model.blocks[0].mlp.up.out_features == 24


def test_generate_greedy_stops_at_eos():
    model = tiny()
    out = model.generate(torch.tensor([[1, 2]]), max_new_tokens=5, temperature=0.0)
    assert out.shape == (1, 7)
    first = int(out[0, 2])
    stopped = model.generate(torch.tensor([[1, 2]]), max_new_tokens=5, eos_id=first)
    assert stopped.shape == (1, 3)


def test_generate_stops_rows_independently():
    model = tiny()
    prompts = torch.tensor([[1, 2], [3, 4], [5, 6]])
    alone = [model.generate(row[None], max_new_tokens=5)[0, 2:] for row in prompts]
    eos = int(alone[0][1])  # row 0 says it second; the other rows may say it later, or never
    together = model.generate(prompts, max_new_tokens=5, eos_id=eos)
    for row, free in zip(together[:, 2:], alone):
        first = (free == eos).nonzero()
        if len(first):  # the same tokens up to and including its first EOS, then EOS only
            n = int(first[0]) + 1
            assert torch.equal(row[:n], free[:n]) and (row[n:] == eos).all()
        else:
            assert torch.equal(row[:len(free)], free)
    stops = [int((row == eos).nonzero()[0]) if (row == eos).any() else None for row in alone]
    assert len(set(stops)) > 1  # the rows do finish at different steps
    assert together.size(1) == 2 + (5 if None in stops else max(stops) + 1)


def test_generate_top_k_1_equals_greedy():
    model = tiny()
    g = torch.Generator().manual_seed(0)
    greedy = model.generate(torch.tensor([[1]]), 6)
    sampled = model.generate(torch.tensor([[1]]), 6, temperature=1.0, top_k=1, generator=g)
    assert torch.equal(greedy, sampled)


def test_positions_give_the_same_logits_and_loss_there():
    model = tiny()
    idx = torch.randint(0, 11, (4, 8))
    targets = torch.randint(0, 11, (4, 8))
    loss_mask = torch.zeros(4, 8, dtype=torch.bool)
    loss_mask[:, [5, 6]] = True
    full, loss = model(idx, targets, loss_mask)
    cols = torch.tensor([5, 6])
    part, loss_part = model(idx, targets, loss_mask, positions=cols)
    assert part.shape == (4, 2, 11)
    assert torch.allclose(full[:, cols], part, atol=1e-5) and torch.allclose(loss, loss_part, atol=1e-6)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[:, 7] = False
    padded_full, _ = model(idx, attention_mask=mask)
    padded_part, _ = model(idx, attention_mask=mask, positions=cols)
    assert torch.allclose(padded_full[:, cols], padded_part, atol=1e-5)


def ragged_batch(left=False):
    """Rows of 4-8 real tokens, padded right (or left), loss on each row's last 1-3 real tokens."""
    g = torch.Generator().manual_seed(1)
    lengths, answers = [8, 5, 6, 4], [3, 1, 2, 2]
    idx = torch.zeros(4, 8, dtype=torch.long)
    targets, real, loss_mask = idx.clone(), torch.zeros(4, 8, dtype=torch.bool), torch.zeros(4, 8, dtype=torch.bool)
    for i, (n, a) in enumerate(zip(lengths, answers)):
        cols = slice(8 - n, 8) if left else slice(0, n)
        idx[i, cols], targets[i, cols] = torch.randint(2, 11, (2, n), generator=g)
        real[i, cols] = True
        loss_mask[i, cols] = torch.arange(n) >= n - a
    return idx, targets, loss_mask, real


def test_explicit_attention_matches_sdpa_causal_masked_and_at_positions():
    model, written_out = tiny().double(), tiny(attention="explicit").double()
    idx, targets, loss_mask, real = ragged_batch(left=True)
    cols = torch.tensor([5, 6, 7])
    for kwargs in ({}, {"attention_mask": real}, {"positions": cols}, {"attention_mask": real, "positions": cols}):
        reference, _ = model(idx, **kwargs)
        explicit, _ = written_out(idx, **kwargs)
        assert torch.allclose(reference, explicit, atol=1e-9), kwargs
    q, k, v = torch.randn(3, 2, 2, 5, 4, dtype=torch.double).unbind(0)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    assert torch.allclose(explicit_attention(q, k, v, causal), F.scaled_dot_product_attention(q, k, v, is_causal=True))
    with pytest.raises(ValueError, match="not one of"):
        tiny(attention="flash")


@pytest.mark.parametrize("left", [False, True])
def test_evaluation_in_chunks_scores_as_the_model_in_one_go(left):
    # Right padded, the chunks' rows carry loss at different columns (rows 0-2: 4-7, row 3: 2-3):
    # one set of answer columns for the whole split lets their outputs stack.
    from metrics import split_outputs
    from runtime import forward_context

    model = tiny().double()
    idx, targets, loss_mask, real = ragged_batch(left)
    batch = {"idx": idx, "targets": targets, "loss_mask": loss_mask, "attention_mask": real}
    whole, chunked = (split_outputs(model, batch, n, forward_context("cpu")) for n in (4, 3))
    assert torch.equal(whole["mask"], chunked["mask"]) and torch.equal(whole["correct"], chunked["correct"])
    assert torch.allclose(whole["token_loss"], chunked["token_loss"], atol=1e-12)
    _, loss = model(idx, targets, loss_mask, real)
    assert int(chunked["mask"].sum()) == int(loss_mask.sum())
    assert (chunked["token_loss"] * chunked["mask"]).sum().item() / int(loss_mask.sum()) == pytest.approx(loss.item())
