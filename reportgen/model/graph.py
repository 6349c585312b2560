"""The model as one flat graph: every layer of every nested model, addressed by a path.

Keras offers no public way to read or cut inside a nested model (a MobileNet
base used as a layer, a Sequential inside a Functional): `get_layer` sees only
the top level, and a Sequential that was never called has no `.input`. So the
model is re-traced here, layer by layer, onto a fresh `keras.Input`: nested
Functional and Sequential models are opened up and their layers called in
place, at any depth. The result is one Functional graph whose every tensor is
reachable, and a `Node` per layer call with a stable, unique path such as
`mobilenetv2_0.35_96/block_1_expand_relu`.

The layers themselves are shared, not copied: the flat graph computes exactly
what the model computes, with the same weights, and flattening costs no memory.
A `replace` hook swaps chosen layers for others while tracing (the surgery in
`surgery.py` uses it); the user's model is never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
from keras.src.models.functional import Functional

from reportgen.util.errors import ReportgenError

INPUT = "(input)"  # the path of the image input (Keras layer names never have parentheses)

# (path, layer) -> a callable to call instead of the layer, or None to keep it.
Replace = Callable[[str, keras.Operation], "Callable[..., Any] | None"]


@dataclass(frozen=True)
class Node:
    """One call of one layer (or op) in the flat graph."""

    path: str  # unique: nested models' names joined by "/", and ":1", ":2" for a shared layer's later calls
    layer: keras.Operation
    inputs: tuple[str, ...]  # paths of the nodes whose outputs it takes (INPUT for the image)
    tensor: Any  # its symbolic output (a KerasTensor), or None where it could not be traced (see any_size)

    @property
    def name(self) -> str:
        """The layer's own name, without the nested models around it."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def shape(self) -> tuple:
        return tuple(self.tensor.shape)


@dataclass
class ModelGraph:
    """A model traced flat: its input, every node in call order, and the output node's path."""

    input: Any  # the keras.Input the graph starts from
    image: Any  # the tensor the model's own first layer sees (the input, or the input mapped to the model's range)
    nodes: dict[str, Node]
    output: str
    _consumers: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for node in self.nodes.values():
            for source in node.inputs:
                self._consumers.setdefault(source, []).append(node.path)

    def __getitem__(self, path: str) -> Node:
        try:
            return self.nodes[path]
        except KeyError:
            raise KeyError(f"no layer {path!r} in the model") from None

    def __contains__(self, path: str) -> bool:
        return path in self.nodes

    def consumers(self, path: str) -> list[Node]:
        """The nodes that take this node's output."""
        return [self.nodes[p] for p in self._consumers.get(path, [])]

    def available(self, path: str) -> bool:
        """Whether the node was traced (a graph traced at any size lacks the nodes that need a fixed size)."""
        return path in self.nodes and self.nodes[path].tensor is not None

    def model(self, paths: list[str] | str) -> keras.Model:
        """A Keras model from the graph's input to the named nodes' outputs: one tensor for one path,
        else a dict keyed by path."""
        if isinstance(paths, str):
            return self.model_of(self[paths].tensor)
        return self.model_of({path: self[path].tensor for path in paths})

    def model_of(self, outputs: Any) -> keras.Model:
        """A Keras model from the graph's input to `outputs` (any nesting of tensors computed from it):
        the one way reportgen makes a model out of the user's, so every such model has unique names (see
        `unique_names`)."""
        unique_names(outputs, keep={id(node.layer) for node in self.nodes.values()})
        return keras.Model(self.input, outputs)


def unique_names(outputs: Any, keep: set[int]) -> None:
    """Rename the operations that reportgen added to a graph (an input, a linear copy of a layer, the ops of an
    adapter or a summary) where their name is taken by another operation of the graph, so that Keras accepts
    it as a model ("All operation names should be unique").

    Keras names a new operation after a per-process counter ("multiply", "multiply_1", ...), which knows
    nothing of the names in a model loaded from a file: the user's model may hold a "multiply" that the
    process never counted. So no name is trusted to be free; each is checked against the graph itself.

    Args:
        outputs: the graph's output tensors, any nesting.
        keep: ids of the user's operations, whose names never change (they are the paths of the report).
    """
    operations = _operations(outputs)
    taken = {op.name for op in operations if id(op) in keep}
    for op in operations:
        if id(op) in keep:
            continue
        if op.name in taken:
            base, count = op.name, 1
            while f"{base}_rg{count}" in taken:
                count += 1
            op.name = f"{base}_rg{count}"
        taken.add(op.name)


def _operations(outputs: Any) -> list[keras.Operation]:
    """Every operation the output tensors depend on, each once, outputs first."""
    seen: dict[int, keras.Operation] = {}
    stack = list(keras.tree.flatten(outputs))
    visited: set[int] = set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in visited or not hasattr(tensor, "_keras_history"):
            continue
        visited.add(id(tensor))
        operation, node_index, _ = tensor._keras_history
        if operation is None:
            continue
        seen.setdefault(id(operation), operation)
        stack.extend(keras.tree.flatten(operation._inbound_nodes[node_index].input_tensors))
    return list(seen.values())


def model_input_shape(model: keras.Model) -> tuple:
    """The (batch, ...) shape of the model's single input, with clear errors for models reportgen cannot read."""
    if not isinstance(model, (Functional, keras.Sequential)):
        raise ReportgenError(
            f"the model is a subclassed keras.Model ({type(model).__name__}) with no layer graph to read: build it "
            "as a Functional model on keras.Input (or a Sequential one) and save that")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ReportgenError(f"the model {model.name!r} has no input shape: build it on a keras.Input "
                             "(e.g. keras.Sequential([keras.Input((28, 28, 1)), ...])) and save it again")
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ReportgenError(f"the model has {len(inputs)} inputs and {len(model.outputs)} outputs; reportgen "
                             "reports on image classifiers with one input and one output")
    return tuple(inputs[0].shape)


def flatten(model: keras.Model, adapt: Callable[[Any], Any] | None = None, replace: Replace | None = None,
            input_shape: tuple | None = None, partial: bool = False) -> ModelGraph:
    """Trace `model` flat onto a new input.

    Args:
        model: a Functional or Sequential model, nested models inside at any depth.
        adapt: applied to the new input before the model's first layer (e.g. the map from [0, 1] images
            to the range the model was trained on).
        replace: swaps layers while tracing (see `Replace`).
        input_shape: the input's (batch, H, W, C), e.g. with free spatial dims (default: the model's).
        partial: keep going where a node cannot be traced at `input_shape` (a Dense after a Flatten, when the
            spatial dims are free): it is kept with tensor None, and so is everything after it.

    Returns:
        The flat graph.
    """
    shape = input_shape or model_input_shape(model)
    inputs = keras.Input(batch_shape=shape)
    image = adapt(inputs) if adapt else inputs
    tracer = _Tracer(replace, partial)
    tracer.paths[id(image)] = INPUT
    output = tracer.call(model, (image,), {}, prefix="", top=True)
    return ModelGraph(inputs, image, tracer.nodes, tracer.paths.get(id(output), next(reversed(tracer.nodes))))


class _Missing:
    """What a node returns when it could not be traced at the requested shape (so its consumers skip too)."""


class _Tracer:
    """Calls every layer of a model on new symbolic tensors, opening nested models as it goes."""

    def __init__(self, replace: Replace | None, partial: bool) -> None:
        self.replace, self.partial = replace, partial
        self.nodes: dict[str, Node] = {}
        self.paths: dict[int, str] = {}  # id(tensor) -> path of the node that made it

    def call(self, op: keras.Operation, args: tuple, kwargs: dict, prefix: str, top: bool = False) -> Any:
        inner = "" if top else f"{prefix}{op.name}/"
        if isinstance(op, keras.Sequential):
            x = args[0]
            for layer in op.layers:
                x = self.call(layer, (x,), {}, inner)
            return x
        if isinstance(op, Functional):
            return op._run_through_graph(args, operation_fn=lambda o: lambda *a, **k: self.call(o, a, k, inner))
        return self.leaf(op, args, kwargs, prefix)

    def leaf(self, op: keras.Operation, args: tuple, kwargs: dict, prefix: str) -> Any:
        path = self._unique(prefix + op.name)
        tensors = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, (keras.KerasTensor, _Missing))]
        sources = tuple(self.paths.get(id(t), INPUT) for t in tensors)
        kwargs = {k: v for k, v in kwargs.items() if k != "training"}  # always inference
        output: Any = _Missing()
        if not any(isinstance(t, _Missing) for t in tensors):
            fn = (self.replace(path, op) if self.replace else None) or op
            try:
                output = fn(*args, **kwargs)
            except (ValueError, TypeError, NotImplementedError):
                if not self.partial:
                    raise
        self.nodes[path] = Node(path, op, sources, None if isinstance(output, _Missing) else output)
        for tensor in keras.tree.flatten(output):
            self.paths[id(tensor)] = path
        return output

    def _unique(self, path: str) -> str:
        if path not in self.nodes:
            return path
        call = 1
        while f"{path}:{call}" in self.nodes:
            call += 1
        return f"{path}:{call}"
