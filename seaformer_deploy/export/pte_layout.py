"""A .pte whose tensor layout cannot be misread: 4-D inputs and outputs in logical NHWC.

A program traced with channels-last inputs keeps the logical NCHW shape and only changes the
dim order. ExecuTorch's ``Method::set_input`` checks an input's dtype and shape, then copies its
bytes; it never compares dim orders, and ``executorch.runtime`` does not even report them. So
an ordinary contiguous NCHW tensor is accepted and the logits are silently wrong. With the
logical shape (1, H, W, C) the same mistake fails on shape.

The permutes that give the program NHWC edges would cost two XNNPACK transposes each: ExecuTorch
adds one back to the channels-last order XNNPACK computes in, and XNNPACK does not fuse them.
``inverse_transposes_cancelled`` removes every such pair from the delegate's graph before it is
serialised, so XNNPACK reads and writes the NHWC buffers directly, as it does channels-last ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

NCHW_TO_NHWC, NHWC_TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


class NHWCInterface(nn.Module):
    """``body`` (NCHW inside) with 4-D inputs taken and outputs returned as (N, H, W, C)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.body(*(t.permute(NHWC_TO_NCHW) if t.dim() == 4 else t for t in inputs))
        outs = outs if isinstance(outs, tuple) else (outs,)
        return tuple(o.permute(NCHW_TO_NHWC) if o.dim() == 4 else o for o in outs)


def to_nhwc(tensor: torch.Tensor) -> torch.Tensor:
    """A 4-D NCHW tensor as the contiguous NHWC tensor the program takes; others unchanged.

    A clone, not ``contiguous()``: with 1x1 spatial size the permuted view already counts as
    contiguous but keeps strides whose dim order is (0, 3, 1, 2), and torch.export traces the
    example's strides (SeaFormer's 1/64 context at 64x64)."""
    if tensor.dim() != 4:
        return tensor
    return tensor.permute(NCHW_TO_NHWC).clone(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def inverse_transposes_cancelled() -> Iterator[list[int]]:
    """While active, every XNNPACK graph ExecuTorch lowers loses its transposes that undo each
    other; yields the number of pairs removed per delegated partition."""
    import executorch.backends.xnnpack.xnnpack_preprocess as preprocess

    serialize = preprocess.serialize_xnnpack_binary
    removed: list[int] = []

    def cancelling(graph, constant_data):
        removed.append(cancel_inverse_transposes(graph))
        return serialize(graph, constant_data)

    preprocess.serialize_xnnpack_binary = cancelling
    try:
        yield removed
    finally:
        preprocess.serialize_xnnpack_binary = serialize


def cancel_inverse_transposes(graph) -> int:
    """Remove each T1 -> T2 from an XNNGraph where T2 undoes T1 and only T2 reads T1's output.

    Inside the graph or at an input, T2's readers read T1's input instead. When T2 writes an
    external output, the node before T1 writes that output directly and its other readers read
    it there. Either way every value keeps its bytes: the result is bit-identical."""
    removed = 0
    while (sandwich := _elementwise_sandwich(graph)) is not None:
        first, middle, second = sandwich
        middle.input_id, middle.output_id = first.input_id, second.output_id
        graph.xnodes = [n for n in graph.xnodes
                        if n.xnode_union is not first and n.xnode_union is not second]
        removed += 1
    while (pair := _cancelling_pair(graph)) is not None:
        first, second, producer, readers = pair
        source, result = first.input_id, second.output_id
        if producer is not None:
            _rename(producer, "output", source, result)
            for node in readers:
                _rename(node, "input", source, result)
        else:
            for node in readers:
                _rename(node, "input", result, source)
        graph.xnodes = [n for n in graph.xnodes
                        if n.xnode_union is not first and n.xnode_union is not second]
        removed += 1
    return removed


def _wiring(graph) -> tuple[list, dict[int, list], dict[int, object]]:
    """The graph's nodes, each value's readers and each value's producer."""
    nodes = [n.xnode_union for n in graph.xnodes]
    readers: dict[int, list] = {}
    producers: dict[int, object] = {}
    for node in nodes:
        for value in _ids(node, "input"):
            readers.setdefault(value, []).append(node)
        for value in _ids(node, "output"):
            producers[value] = node
    return nodes, readers, producers


def _cancelling_pair(graph):
    """(T1, T2, the producer to redirect or None, the readers to rewire), or None."""
    nodes, readers, producers = _wiring(graph)
    outputs, externals = set(graph.output_ids), set(graph.input_ids) | set(graph.output_ids)
    for second in nodes:
        first = producers.get(getattr(second, "input_id", None))
        if not (_is_transpose(first) and _is_transpose(second) and _undoes(first, second)):
            continue
        if len(readers[first.output_id]) != 1 or first.output_id in outputs:
            continue
        if second.output_id not in outputs:
            return first, second, None, readers.get(second.output_id, [])
        producer = producers.get(first.input_id)
        if producer is not None and first.input_id not in externals:
            others = [n for n in readers[first.input_id] if n is not first]
            return first, second, producer, others
    return None


# XNNPACK operators that map each element on its own, whatever the layout: a transpose and its
# inverse around one of them cancel. INT8 programs have Convert (quantize) between the input's
# NHWC -> NCHW transpose and XNNPACK's NCHW -> NHWC one: removing that pair took SeaFormer-T
# 512x512's INT8 .pte from 0.98 to 0.04 ms of transposes (of 13.2 ms; ExecuTorch's profile).
ELEMENTWISE = {"XNNConvert", "XNNClamp", "XNNAbs", "XNNNegate", "XNNFloor", "XNNCeiling",
               "XNNSquare", "XNNSquareRoot", "XNNReciprocalSquareRoot", "XNNExp", "XNNLog",
               "XNNSigmoid", "XNNTanh", "XNNHardswish", "XNNGelu", "XNNSin", "XNNCos",
               "XNNCopy"}


def _elementwise_sandwich(graph):
    """(T1, E, T2): T1 -> E -> T2 where E is elementwise, T2 undoes T1, each value is read by
    the next node only, and E's output is typed as T2's (per-tensor quantization or none), so
    E can read T1's input and write T2's output; or None. Every value keeps its bytes."""
    nodes, readers, producers = _wiring(graph)
    values = {_tensor(v.xvalue_union).id_out: v.xvalue_union for v in graph.xvalues}
    outputs = set(graph.output_ids)
    for second in nodes:
        middle = producers.get(getattr(second, "input_id", None))
        first = producers.get(getattr(middle, "input_id", None))
        if not (type(middle).__name__ in ELEMENTWISE and _is_transpose(first)
                and _is_transpose(second) and _undoes(first, second)):
            continue
        if (readers[first.output_id] != [middle] or readers[middle.output_id] != [second]
                or {first.output_id, middle.output_id} & outputs):
            continue
        if _same_type(values[middle.output_id], values[second.output_id]):
            return first, middle, second
    return None


def _tensor(union):
    """The tensor record of a value (a quantized value wraps one)."""
    return getattr(union, "tensor_value", union)


def _same_type(a, b) -> bool:
    """Same datatype, and the same per-tensor quantization or none (a per-channel one names a
    dimension, which the transpose moves)."""
    qa, qb = getattr(a, "quant_params", None), getattr(b, "quant_params", None)
    per_tensor = all(q is None or type(q).__name__ == "PerTensorQuant" for q in (qa, qb))
    return _tensor(a).datatype == _tensor(b).datatype and per_tensor and qa == qb


def _is_transpose(node: object) -> bool:
    return type(node).__name__ == "XNNStaticTranspose"


def _undoes(first, second) -> bool:
    """Transposing by ``first`` then ``second`` is the identity (out[i] = in[p1[p2[i]]])."""
    return [first.perm[i] for i in second.perm] == list(range(len(first.perm)))


def _ids(node: object, kind: str) -> list[int]:
    return [v for f, v in vars(node).items() if f.startswith(kind) and f.endswith("_id")]


def _rename(node: object, kind: str, old: int, new: int) -> None:
    for f, v in vars(node).items():
        if f.startswith(kind) and f.endswith("_id") and v == old:
            setattr(node, f, new)
