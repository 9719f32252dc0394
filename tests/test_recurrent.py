"""Recurrent layers and cells against torch.nn with copied weights; fused == readable."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lmforge.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

TOL = dict(atol=1e-5, rtol=0)
KINDS = {  # name -> (ours, torch, kwargs)
    "rnn_tanh": (RNN, torch.nn.RNN, {}),
    "rnn_relu": (RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, torch.nn.LSTM, {}),
    "gru": (GRU, torch.nn.GRU, {}),
}


def pair(kind, n_in=5, H=6, L=1, **kw):
    ours_cls, ref_cls, extra = KINDS[kind]
    ref = ref_cls(n_in, H, L, **extra, **kw)
    ours = ours_cls(n_in, H, L, **extra, **kw)
    ours.load_state_dict(ref.state_dict())  # same names and shapes: a 1:1 copy
    return ours, ref


def states(h):
    return h if isinstance(h, tuple) else (h,)


def assert_same(out_a, h_a, out_b, h_b):
    torch.testing.assert_close(out_a, out_b, **TOL)
    for a, b in zip(states(h_a), states(h_b), strict=True):
        torch.testing.assert_close(a, b, **TOL)


def ref_run(ref, x, lengths, hx=None, batch_first=False):
    """torch with pack_padded_sequence / pad_packed_sequence, padded to x's length."""
    T = x.shape[1] if batch_first else x.shape[0]
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, h = ref(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return out, h


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("layers,bidir,batch_first", [(1, False, False), (2, True, True),
                                                      (2, False, True)])
@pytest.mark.parametrize("fused", [True, False])
def test_matches_torch_full_and_padded(kind, layers, bidir, batch_first, fused):
    torch.manual_seed(0)
    ours, ref = pair(kind, L=layers, bidirectional=bidir, batch_first=batch_first)
    ours.fused = fused
    B, T = 4, 7
    x = torch.randn(B, T, 5) if batch_first else torch.randn(T, B, 5)
    # full sequences, zero initial state
    assert_same(*ours(x), *ref(x))
    # variable lengths and a given initial state
    lengths = torch.tensor([7, 3, 5, 1])
    D = 2 if bidir else 1
    h0 = torch.randn(layers * D, B, 6)
    hx = (h0, torch.randn_like(h0)) if kind == "lstm" else h0
    out, h = ours(x, hx, lengths=lengths)
    r_out, r_h = ref_run(ref, x, lengths, hx, batch_first)
    assert_same(out, h, r_out, r_h)
    # outputs past each length are exactly zero
    o = out if batch_first else out.transpose(0, 1)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(o[b, n:] == 0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_readable_with_gradients(kind):
    torch.manual_seed(1)
    layer, _ = pair(kind, L=2, bidirectional=True, batch_first=True)
    x = torch.randn(3, 6, 5)
    lengths = torch.tensor([2, 6, 4])
    grads, outs = [], []
    for fused in (True, False):
        layer.fused = fused
        layer.zero_grad()
        out, h = layer(x, lengths=lengths)
        (out.square().sum() + sum(s.sum() for s in states(h))).backward()
        outs.append((out, h))
        grads.append({n: p.grad.clone() for n, p in layer.named_parameters()})
    assert_same(*outs[0], *outs[1])
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4)


def test_parameters_are_torch_names_and_shared_between_paths():
    ours, ref = pair("lstm", L=2, bidirectional=True)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert ours._flat_weights[0] is ours.weight_ih_l0  # the fused path gets these objects
    ref.load_state_dict(ours.state_dict())  # and back the other way
    nobias, ref_nb = pair("gru", bias=False)
    assert not any("bias" in n for n, _ in nobias.named_parameters())
    x = torch.randn(4, 2, 5)
    for fused in (True, False):
        nobias.fused = fused
        assert_same(*nobias(x), *ref_nb(x))


@settings(max_examples=12, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       kind=st.sampled_from(list(KINDS)), bidir=st.booleans())
def test_padded_batch_equals_each_sequence_alone(lengths, kind, bidir):
    """Padding changes nothing: each row's outputs and final state are those of the row
    run alone at its own length, so the reverse direction starts at its own last step."""
    torch.manual_seed(2)
    layer, _ = pair(kind, n_in=3, H=4, L=2, bidirectional=bidir, batch_first=True)
    T = max(lengths)
    x = torch.randn(len(lengths), T, 3)
    for fused in (True, False):
        layer.fused = fused
        out, h = layer(x, lengths=lengths)
        for b, n in enumerate(lengths):
            o1, h1 = layer(x[b:b + 1, :n])
            torch.testing.assert_close(out[b:b + 1, :n], o1, **TOL)
            for s, s1 in zip(states(h), states(h1), strict=True):
                torch.testing.assert_close(s[:, b:b + 1], s1, **TOL)


def test_lstm_step_follows_the_equations():
    """One LSTM step by hand: the candidate and the output path use tanh."""
    torch.manual_seed(3)
    cell = LSTMCell(3, 2)
    x, h, c = torch.randn(1, 3), torch.randn(1, 2), torch.randn(1, 2)
    W = cell.weight_ih @ x[0] + cell.bias_ih + cell.weight_hh @ h[0] + cell.bias_hh
    i, f, g, o = W.detach().chunk(4)
    sig = torch.sigmoid
    c_new = sig(f) * c[0] + sig(i) * torch.tanh(g)
    h_new = sig(o) * torch.tanh(c_new)
    got_h, got_c = cell(x, (h, c))
    torch.testing.assert_close(got_c[0], c_new, **TOL)
    torch.testing.assert_close(got_h[0], h_new, **TOL)
    # GRU: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h
    gcell = GRUCell(3, 2)
    gi = (gcell.weight_ih @ x[0] + gcell.bias_ih).detach().chunk(3)
    gh = (gcell.weight_hh @ h[0] + gcell.bias_hh).detach().chunk(3)
    r, z = sig(gi[0] + gh[0]), sig(gi[1] + gh[1])
    n = torch.tanh(gi[2] + r * gh[2])
    torch.testing.assert_close(gcell(x, h)[0], (1 - z) * n + z * h[0], **TOL)


@pytest.mark.parametrize("ours_cls,ref_cls,kw", [
    (RNNCell, torch.nn.RNNCell, {}), (RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    (LSTMCell, torch.nn.LSTMCell, {}), (GRUCell, torch.nn.GRUCell, {}),
    (GRUCell, torch.nn.GRUCell, {"bias": False})])
def test_cells_match_torch(ours_cls, ref_cls, kw):
    torch.manual_seed(4)
    ref, ours = ref_cls(5, 4, **kw), ours_cls(5, 4, **kw)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5)
    h = torch.randn(3, 4)
    hx = (h, torch.randn(3, 4)) if ours_cls is LSTMCell else h
    for args in ((x,), (x, hx)):
        for a, b in zip(states(ours(*args)), states(ref(*args)), strict=True):
            torch.testing.assert_close(a, b, **TOL)
    # unbatched
    hx1 = (h[0], hx[1][0]) if ours_cls is LSTMCell else h[0]
    for a, b in zip(states(ours(x[0], hx1)), states(ref(x[0], hx1)), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("fused", [True, False])
def test_unbatched_input_matches_torch(fused):
    ours, ref = pair("lstm", L=2, bidirectional=True)
    ours.fused = fused
    x = torch.randn(4, 5)
    assert_same(*ours(x), *ref(x))


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(5)
    ours, ref = pair("gru", L=2, dropout=0.5)
    x = torch.randn(6, 3, 5)
    ours.eval()
    ref.eval()
    for fused in (True, False):
        ours.fused = fused
        assert_same(*ours(x), *ref(x))  # eval: no dropout
    ours.train()
    for fused in (True, False):
        ours.fused = fused
        assert not torch.allclose(ours(x)[0], ours.eval()(x)[0])
        ours.train()
    single, _ = pair("gru", L=1)  # one layer: there is nothing between layers
    single.train()
    single.fused = False
    torch.testing.assert_close(single(x)[0], single.eval()(x)[0])


def test_init_is_uniform_in_one_over_sqrt_h():
    layer = LSTM(3, 16, 2)
    bound = 1 / math.sqrt(16)
    assert all(p.abs().max() <= bound for p in layer.parameters())


def test_bad_input_gives_clear_errors():
    layer = LSTM(5, 4, batch_first=True)
    with pytest.raises(ValueError, match="input_size=5"):
        layer(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="lengths must be in"):
        layer(torch.randn(2, 3, 5), lengths=[0, 3])
    with pytest.raises(ValueError, match="lengths must be in"):
        layer(torch.randn(2, 3, 5), lengths=[4, 3])
    with pytest.raises(ValueError, match="2 entries|3 entries"):
        layer(torch.randn(2, 3, 5), lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="tuple"):
        layer(torch.randn(2, 3, 5), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(2, 3, 5), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout"):
        GRU(3, 4, 2, dropout=1.0)
