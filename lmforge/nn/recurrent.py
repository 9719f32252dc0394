r"""Recurrent layers, written from their equations: vanilla RNN, LSTM and GRU.

Written by hand because lmforge teaches them; the layers are drop-in replacements for
``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (same gate order, same parameter names and shapes,
so ``load_state_dict`` copies weights 1:1 either way).

Notation: :math:`x_t` is the input at step :math:`t`, :math:`h_{t-1}` (and :math:`c_{t-1}`)
the previous state, :math:`\sigma` the logistic sigmoid, :math:`\odot` the element-wise
product. Each weight :math:`W_{i\cdot}` multiplies the input and :math:`W_{h\cdot}` the
state; every affine map has its own bias, exactly as PyTorch stores them.

Vanilla RNN::

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)      (or relu instead of tanh)

LSTM (gate order i, f, g, o in ``weight_ih`` / ``weight_hh``)::

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)    input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)    forget gate
    g_t =    tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)    candidate cell   (tanh!)
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)    output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)                                    (tanh!)

GRU (gate order r, z, n)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)    reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)    update gate
    n_t =    tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))   candidate (tanh!)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

The source tutorials use a sigmoid for the LSTM candidate :math:`g_t`, for the output
path :math:`\tanh(c_t)` and for the GRU candidate :math:`n_t`. That is wrong: a sigmoid
only produces values in (0, 1), so the cell could only ever *add* to :math:`c_t` and
the state could never move negative. Those three are tanh, in (-1, 1). Note also that
in the GRU the reset gate multiplies :math:`W_{hn} h + b_{hn}` (after the matmul), the
convention of PyTorch and cuDNN.

Layers stack ``num_layers`` of these; layer :math:`k>0` reads the outputs of layer
:math:`k-1` (both directions concatenated when bidirectional), with dropout between
layers (not after the last). A bidirectional layer runs a second set of weights
(``*_reverse``) from the last step to the first.

Two paths compute the same function with the same ``nn.Parameter`` objects:

- ``fused=True`` (default): one call into PyTorch's fused kernels (``torch._VF.lstm``
  etc.: oneDNN/native on CPU, cuDNN on GPU), the same functions ``torch.nn.LSTM`` calls,
  handed this module's own parameters; padded batches go through
  ``pack_padded_sequence``.
- ``fused=False``: the readable path, a Python loop over time steps that evaluates the
  equations above (the input projections of all steps are done in one matmul first).

Padded batches: pass ``lengths`` (B,). Past a sequence's length its state stops
updating, so ``h_n`` (and ``c_n``) are the states after its last real step, its outputs
are zero (as with ``pad_packed_sequence``), and the reverse direction starts at the
sequence's own last real step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

State = Tensor | tuple[Tensor, Tensor]

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
           "rnn_step", "lstm_step", "gru_step"]


# ---------------------------------------------------------------------- one time step
# Each step function takes ``gi = W_ih x_t + b_ih`` already computed (so a layer can
# project every time step in a single matmul) and the previous state.

def rnn_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None,
             nonlinearity: str = "tanh") -> Tensor:
    """Vanilla RNN: ``h' = act(gi + W_hh h + b_hh)``; ``gi``, ``h``: (B, H)."""
    pre = gi + F.linear(h, w_hh, b_hh)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_step(gi: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor,
              b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """LSTM: ``gi`` (B, 4H) holds the input parts of gates i, f, g, o; returns (h', c')."""
    h, c = state
    gates = gi + F.linear(h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
    g = torch.tanh(g)  # candidate cell: tanh, not sigmoid
    c = f * c + i * g
    h = o * torch.tanh(c)  # output path: tanh, not sigmoid
    return h, c


def gru_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """GRU: ``gi`` (B, 3H) holds the input parts of r, z, n; returns h'."""
    gh = F.linear(h, w_hh, b_hh)  # (B, 3H)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)  # candidate: tanh, not sigmoid
    return (1 - z) * n + z * h


_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
_FUSED = {"RNN_TANH": torch._VF.rnn_tanh, "RNN_RELU": torch._VF.rnn_relu,
          "LSTM": torch._VF.lstm, "GRU": torch._VF.gru}


def _init_uniform(module: nn.Module, hidden_size: int) -> None:
    """PyTorch's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


# ---------------------------------------------------------------------- layers

class _Recurrent(nn.Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    mode = ""  # "RNN_TANH" | "RNN_RELU" | "LSTM" | "GRU"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, fused: bool = True):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got "
                             f"{input_size} and {hidden_size}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.fused = bidirectional, fused
        self.num_directions = 2 if bidirectional else 1
        gate_size = _GATES[self.mode] * hidden_size
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes = [("weight_ih", (gate_size, layer_in)),
                          ("weight_hh", (gate_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                for base, shape in shapes:
                    self.register_parameter(base + sfx, nn.Parameter(torch.empty(shape)))
                    self._flat_weights_names.append(base + sfx)
        self.reset_parameters()
        self.flatten_parameters()

    def reset_parameters(self) -> None:
        _init_uniform(self, self.hidden_size)

    @property
    def _flat_weights(self) -> list[Tensor]:
        # Looked up on every call, so .to(), load_state_dict and reassignment all work.
        return [getattr(self, n) for n in self._flat_weights_names]

    def _layer_weights(self, layer: int, direction: int) -> tuple:
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        return (getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx),
                getattr(self, "bias_ih" + sfx, None), getattr(self, "bias_hh" + sfx, None))

    def flatten_parameters(self) -> None:
        """On CUDA, lay the weights out in one buffer as cuDNN wants (no-op elsewhere).

        Mirrors ``torch.nn.RNNBase.flatten_parameters``: the parameters stay the same
        objects, only their storage moves.
        """
        ws = self._flat_weights
        if not ws or not all(w.is_cuda and w.dtype == ws[0].dtype for w in ws):
            return
        if not torch.backends.cudnn.is_acceptable(ws[0]):
            return
        if len({w.data_ptr() for w in ws}) != len(ws):
            return
        import torch.backends.cudnn.rnn as cudnn_rnn

        with torch.cuda.device_of(ws[0]), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    ws, 4 if self.bias else 2, self.input_size,
                    cudnn_rnn.get_cudnn_mode(self.mode), self.hidden_size, 0,
                    self.num_layers, self.batch_first, self.bidirectional)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        ret = super()._apply(fn, recurse)
        self.flatten_parameters()
        return ret

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s + f", fused={self.fused}"

    # ------------------------------------------------------------------ checks

    def _zeros_state(self, x: Tensor, batch: int) -> State:
        z = x.new_zeros(self.num_layers * self.num_directions, batch, self.hidden_size)
        return (z, z.clone()) if self.mode == "LSTM" else z

    def _check_state(self, hx: State, batch: int, batched: bool) -> State:
        want = (self.num_layers * self.num_directions, batch, self.hidden_size)
        parts = hx if isinstance(hx, tuple) else (hx,)
        if len(parts) != (2 if self.mode == "LSTM" else 1):
            raise ValueError(f"{type(self).__name__}: hx must be "
                             + ("a (h_0, c_0) tuple" if self.mode == "LSTM" else "a tensor"))
        out = []
        for p in parts:
            if not batched:
                if p.dim() != 2:
                    raise ValueError(f"{type(self).__name__}: unbatched input needs a 2-D "
                                     f"state, got {p.dim()}-D")
                p = p.unsqueeze(1)
            if tuple(p.shape) != want:
                raise ValueError(f"{type(self).__name__}: expected state of shape {want}, "
                                 f"got {tuple(p.shape)}")
            out.append(p)
        return (out[0], out[1]) if self.mode == "LSTM" else out[0]

    @staticmethod
    def _check_lengths(lengths: Tensor | Sequence[int], batch: int, steps: int) -> Tensor:
        lengths = torch.as_tensor(lengths).detach().to("cpu", torch.int64).reshape(-1)
        if lengths.numel() != batch:
            raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {batch}")
        if batch and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
            raise ValueError(f"lengths must be in [1, {steps}] (the padded length), got "
                             f"min {int(lengths.min())}, max {int(lengths.max())}")
        return lengths

    # ------------------------------------------------------------------ forward

    def forward(self, input: Tensor, hx: State | None = None,
                lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, State]:
        """Run the layer over a (padded) batch.

        ``input``: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I).
        ``hx``: initial state (L*D, B, H), for LSTM a tuple ``(h_0, c_0)``; zeros if None.
        ``lengths``: (B,) real lengths of right-padded sequences, or None (all full).

        Returns ``(output, h_n)``, for LSTM ``(output, (h_n, c_n))``: ``output`` is
        (T, B, D*H) (or batch first) with zeros past each length; ``h_n`` (L*D, B, H)
        holds, per layer and direction (forward first), the state after the last real
        step.
        """
        if input.dim() not in (2, 3):
            raise ValueError(f"{type(self).__name__}: expected 2-D or 3-D input, got "
                             f"{input.dim()}-D")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {input.shape[-1]} features, "
                             f"the layer expects input_size={self.input_size}")
        batched = input.dim() == 3
        batch_dim = 0 if self.batch_first else 1
        if not batched:
            input = input.unsqueeze(batch_dim)
            if lengths is not None:
                raise ValueError("lengths needs a batched input")
        batch, steps = input.shape[batch_dim], input.shape[1 - batch_dim]
        hx = self._zeros_state(input, batch) if hx is None else \
            self._check_state(hx, batch, batched)
        if lengths is not None:
            lengths = self._check_lengths(lengths, batch, steps)
            if bool((lengths == steps).all()):
                lengths = None  # nothing is padded: same as no lengths
        if self.fused:
            output, h = self._forward_fused(input, hx, lengths)
        else:
            output, h = self._forward_loop(input, hx, lengths)
        if not batched:
            output = output.squeeze(batch_dim)
            h = (h[0].squeeze(1), h[1].squeeze(1)) if isinstance(h, tuple) else h.squeeze(1)
        return output, h

    def _forward_fused(self, x: Tensor, hx: State, lengths: Tensor | None):
        fn = _FUSED[self.mode]
        args = (self._flat_weights, self.bias, self.num_layers, self.dropout, self.training,
                self.bidirectional)
        if lengths is None:
            result = fn(x, hx, *args, self.batch_first)
            out, h = result[0], result[1:]
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=self.batch_first,
                                          enforce_sorted=False)
            order, unorder = packed.sorted_indices, packed.unsorted_indices
            hx = tuple(s.index_select(1, order) for s in hx) if isinstance(hx, tuple) \
                else hx.index_select(1, order)
            result = fn(packed.data, packed.batch_sizes, hx, *args)
            out, _ = pad_packed_sequence(
                PackedSequence(result[0], packed.batch_sizes, order, unorder),
                batch_first=self.batch_first, total_length=x.shape[1 if self.batch_first else 0])
            h = tuple(s.index_select(1, unorder) for s in result[1:])
        return out, (h if self.mode == "LSTM" else h[0])

    def _forward_loop(self, x: Tensor, hx: State, lengths: Tensor | None):
        """The readable path: evaluate the step equations one time step at a time."""
        if self.batch_first:
            x = x.transpose(0, 1)  # work time-major: (T, B, I)
        steps = x.shape[0]
        lstm = self.mode == "LSTM"
        h0, c0 = hx if lstm else (hx, None)
        valid = None  # (T, B, 1): does step t belong to sequence b?
        if lengths is not None:
            valid = (torch.arange(steps)[:, None] < lengths[None, :]).to(x.device)[..., None]
        h_last, c_last = [], []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer, d)
                gi = F.linear(layer_in, w_ih, b_ih)  # (T, B, G*H): all input projections
                k = layer * self.num_directions + d
                h = h0[k]
                c = c0[k] if lstm else None
                out: list[Tensor] = [gi.new_empty(0)] * steps
                for t in (reversed(range(steps)) if d else range(steps)):
                    if lstm:
                        h_new, c_new = lstm_step(gi[t], (h, c), w_hh, b_hh)
                    elif self.mode == "GRU":
                        h_new = gru_step(gi[t], h, w_hh, b_hh)
                    else:
                        h_new = rnn_step(gi[t], h, w_hh, b_hh,
                                         "relu" if self.mode == "RNN_RELU" else "tanh")
                    if valid is None:
                        h = h_new
                        c = c_new if lstm else None
                        out[t] = h
                    else:  # padding: keep the old state, output zeros
                        m = valid[t]
                        h = torch.where(m, h_new, h)
                        if lstm:
                            c = torch.where(m, c_new, c)
                        out[t] = torch.where(m, h_new, torch.zeros_like(h_new))
                outs.append(torch.stack(out))  # (T, B, H)
                h_last.append(h)
                if lstm:
                    c_last.append(c)
            layer_in = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
        output = layer_in.transpose(0, 1) if self.batch_first else layer_in
        h_n = torch.stack(h_last)
        return output, ((h_n, torch.stack(c_last)) if lstm else h_n)


class RNN(_Recurrent):
    """Elman RNN, ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (or relu).

    Same arguments, parameters and outputs as ``torch.nn.RNN``, plus ``fused`` (use the
    fused kernel, else the readable loop) and ``lengths`` in ``forward``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 nonlinearity: str = "tanh", **kw):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(input_size, hidden_size, num_layers, **kw)


class LSTM(_Recurrent):
    """Long short-term memory (equations in the module docstring).

    Same arguments, parameters and outputs as ``torch.nn.LSTM`` (without ``proj_size``),
    plus ``fused`` and ``lengths``. ``forward`` returns ``(output, (h_n, c_n))``.
    """

    mode = "LSTM"


class GRU(_Recurrent):
    """Gated recurrent unit (equations in the module docstring).

    Same arguments, parameters and outputs as ``torch.nn.GRU``, plus ``fused`` and
    ``lengths``.
    """

    mode = "GRU"


# ---------------------------------------------------------------------- single-step cells

class _Cell(nn.Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got "
                             f"{input_size} and {hidden_size}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(g)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(g)) if bias else None
        _init_uniform(self, hidden_size)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    def _prepare(self, x: Tensor) -> tuple[Tensor, bool]:
        if x.dim() not in (1, 2):
            raise ValueError(f"{type(self).__name__}: expected 1-D or 2-D input, got "
                             f"{x.dim()}-D")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {x.shape[-1]} features, "
                             f"expected {self.input_size}")
        batched = x.dim() == 2
        return (x if batched else x.unsqueeze(0)), batched

    def _state(self, h: Tensor | None, x: Tensor, batched: bool) -> Tensor:
        if h is None:
            return x.new_zeros(x.shape[0], self.hidden_size)
        h = h if batched else h.unsqueeze(0)
        if tuple(h.shape) != (x.shape[0], self.hidden_size):
            raise ValueError(f"{type(self).__name__}: expected state of shape "
                             f"{(x.shape[0], self.hidden_size)}, got {tuple(h.shape)}")
        return h


class RNNCell(_Cell):
    """One step of :class:`RNN`; matches ``torch.nn.RNNCell``. ``forward(x, h) -> h'``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, batched = self._prepare(input)
        h = self._state(hx, x, batched)
        h = rnn_step(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh,
                     self.bias_hh, self.nonlinearity)
        return h if batched else h.squeeze(0)


class LSTMCell(_Cell):
    """One step of :class:`LSTM`; matches ``torch.nn.LSTMCell``.

    ``forward(x, (h, c)) -> (h', c')``.
    """

    gates = 4

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        x, batched = self._prepare(input)
        h = self._state(None if hx is None else hx[0], x, batched)
        c = self._state(None if hx is None else hx[1], x, batched)
        h, c = lstm_step(F.linear(x, self.weight_ih, self.bias_ih), (h, c), self.weight_hh,
                         self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_Cell):
    """One step of :class:`GRU`; matches ``torch.nn.GRUCell``. ``forward(x, h) -> h'``."""

    gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, batched = self._prepare(input)
        h = self._state(hx, x, batched)
        h = gru_step(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)
