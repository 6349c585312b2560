"""Deconvnet and guided backprop: the swapped ReLU rules, the receptive-field
zero property, and the user's model left untouched."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from reportgen.methods.projections import Projector
from reportgen.model import Network
from reportgen.model.graph import INPUT


def relu_as_activation() -> keras.Model:
    """ReLU inside Conv2D(activation="relu"), same padding, max pools, a strided conv."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def standalone_relu() -> keras.Model:
    """ReLU as separate ReLU / Activation layers, valid padding, RGB input."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((15, 15, 3))
    x = keras.layers.Conv2D(3, 3, name="c1")(inputs)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    x = keras.layers.Activation("relu", name="r2")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
@pytest.mark.parametrize(("build", "layer"), [(relu_as_activation, "c2"), (standalone_relu, "r2")])
def test_projection_is_zero_outside_the_receptive_field(build, layer, rule):
    model = build()
    rf = Network(model).receptive_field(layer)
    h, w = rf.output_size
    positions = np.array([(y, x) for y in range(h) for x in range(w)])
    images = np.random.default_rng(0).random((len(positions), *model.input_shape[1:]), dtype=np.float32)
    activations = keras.Model(model.input, model.get_layer(layer).output)(images).numpy()
    channels = activations[np.arange(len(positions)), positions[:, 0], positions[:, 1]].argmax(axis=-1)
    p = Projector(model, [layer], rule).project(layer, images, channels, positions)
    nonzero = 0
    for i, (y, x) in enumerate(positions):
        mask = rf.mask(y, x)
        assert np.abs(p[i][~mask]).max(initial=0.0) == 0.0
        nonzero += np.abs(p[i][mask]).max() > 0
    assert nonzero >= len(positions) // 2  # the property is not vacuous


@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
def test_crop_projections_equal_cropped_full_projections(rule):
    model = standalone_relu()  # valid padding throughout: crops are exact
    relu_same = relu_as_activation()  # same padding: crops of full projections
    for m, layer, crops_used in ((model, "r2", True), (model, "p1", True), (relu_same, "c2", False)):
        rf = Network(m).receptive_field(layer)
        rng = np.random.default_rng(4)
        positions = np.stack([rng.integers(0, n, 6) for n in rf.output_size], axis=1)
        images = rng.random((6, *m.input_shape[1:]), dtype=np.float32)
        projector = Projector(m, [layer], rule)
        assert projector.uses_crops(layer) == crops_used
        crops = projector.project_crops(layer, images, np.arange(6) % 3, positions)
        full = projector.project(layer, images, np.arange(6) % 3, positions)
        assert crops.shape == (6, *rf.size, m.input_shape[-1])
        np.testing.assert_allclose(crops, rf.crop(full, positions, fill=0.0), rtol=1e-4, atol=1e-6)


def test_whole_map_projection_covers_more_than_one_unit():
    model = relu_as_activation()
    images = np.random.default_rng(1).random((2, 16, 16, 1), dtype=np.float32)
    projector = Projector(model, ["c2"], "deconvnet")
    whole = projector.project("c2", images, [0, 1])
    rf = Network(model).receptive_field("c2")
    single = projector.project("c2", images, [0, 1], np.array([[0, 0], [0, 0]]))
    assert np.abs(whole[..., 0])[:, ~rf.mask(0, 0)].max() > 0
    assert np.abs(single[..., 0])[:, ~rf.mask(0, 0)].max() == 0


def test_rules_differ_where_the_forward_relu_was_off():
    """x -> 1x1 conv (w=-1) -> ReLU -> 1x1 conv (w=+1, b=5): for x > 0 the ReLU is off.
    Deconvnet passes relu(dy) = 5 back anyway (then -5 through w=-1); guided backprop
    and the plain gradient both stop at the closed ReLU."""
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(1, 1, name="neg")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(1, 1, name="out")(x)
    model = keras.Model(inputs, x)
    model.get_layer("neg").set_weights([-np.ones((1, 1, 1, 1)), np.zeros(1)])
    model.get_layer("out").set_weights([np.ones((1, 1, 1, 1)), np.full(1, 5.0)])
    image = np.full((1, 4, 4, 1), 0.5, np.float32)
    at = np.array([[1, 2]])
    deconv = Projector(model, ["out"], "deconvnet").project("out", image, [0], at)
    guided = Projector(model, ["out"], "guided").project("out", image, [0], at)
    assert deconv[0, 1, 2, 0] == pytest.approx(-5.0)
    assert np.count_nonzero(deconv) == 1
    assert not guided.any()


def test_guided_backprop_drops_negative_gradients():
    """One ReLU between two 1x1 convs: guided = seed * w2 * [seed * w2 > 0] * [h > 0] * w1."""
    inputs = keras.Input((1, 1, 1))
    h = keras.layers.Conv2D(2, 1, activation="relu", name="h")(inputs)
    out = keras.layers.Conv2D(1, 1, name="out")(h)
    model = keras.Model(inputs, out)
    model.get_layer("h").set_weights([np.array([[[[1.0, 2.0]]]]), np.zeros(2)])
    model.get_layer("out").set_weights([np.array([[[[3.0], [-1.0]]]]), np.full(1, 10.0)])
    image = np.ones((1, 1, 1, 1), np.float32)  # h = [1, 2], out = 3 - 2 + 10 = 11
    guided = Projector(model, ["out"], "guided").project("out", image, [0], np.array([[0, 0]]))
    plain = 11.0 * (3.0 * 1.0 + (-1.0) * 2.0)
    assert guided[0, 0, 0, 0] == pytest.approx(11.0 * 3.0 * 1.0)  # the negative path (-1) is cut
    assert plain != pytest.approx(guided[0, 0, 0, 0])


@pytest.mark.parametrize("build", [relu_as_activation, standalone_relu])
def test_the_users_model_is_not_modified(build):
    model = build()
    x = np.random.default_rng(2).random((3, *model.input_shape[1:]), dtype=np.float32)
    before_out = model(x).numpy()
    before_weights = [w.copy() for w in model.get_weights()]
    activations = {layer.name: getattr(layer, "activation", None) for layer in model.layers}
    types = [type(layer) for layer in model.layers]

    def plain_gradient() -> np.ndarray:
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            score = tf.reduce_sum(model(xt)[:, 0])
        return tape.gradient(score, xt).numpy()

    before_grad = plain_gradient()
    for rule in ("deconvnet", "guided"):
        Projector(model, ["c2"], rule).project("c2", x, [0, 1, 2])
    Network(model).logits_model()
    Network(model).relu_graph("guided", any_size=True)
    assert [type(layer) for layer in model.layers] == types
    assert {layer.name: getattr(layer, "activation", None) for layer in model.layers} == activations
    assert all(np.array_equal(a, b) for a, b in zip(before_weights, model.get_weights()))
    np.testing.assert_array_equal(model(x).numpy(), before_out)
    np.testing.assert_allclose(plain_gradient(), before_grad, rtol=1e-6)


def test_logit_clone_gives_the_pre_softmax_scores():
    model = standalone_relu()
    x = np.random.default_rng(3).random((4, 15, 15, 3), dtype=np.float32)
    logits = Network(model).logits_model()(x).numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits.sum(axis=1), 1.0)


def test_relu_graph_swaps_every_relu_and_nothing_else():
    """A plain ReLU gets the rule's gradient whether it is its own layer or a conv's activation;
    the user's layers keep theirs."""
    for build, relus in ((standalone_relu, {"r1", "r2"}), (relu_as_activation, {"c1", "c2"})):
        model = build()
        graph = Network(model).relu_graph("deconvnet")
        swapped = {node.path for node in graph.nodes.values()
                   if node.path != INPUT and node.tensor._keras_history.operation is not node.layer}
        assert swapped == relus


def test_receptive_field_is_the_union_over_a_residual_merge():
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(2, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(2, 5, padding="same", name="b")(inputs)
    model = keras.Model(inputs, keras.layers.Add(name="sum")([a, b]))
    network = Network(model)
    assert network.receptive_field("a").size == (3, 3)
    assert network.receptive_field("sum").size == (5, 5)


def test_forward_passes_of_a_deep_model_take_fewer_rows_and_give_the_same_numbers(monkeypatch):
    import reportgen.model as model_module

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    network = Network(keras.Model(inputs, outputs))
    images = np.random.default_rng(0).random((40, 16, 16, 3)).astype(np.float32)
    whole = network.probabilities(images)
    assert network.forward_rows() == 256  # a small model: the plain batch
    monkeypatch.setattr(model_module, "FORWARD_BUDGET", 10 * network.activation_values())
    assert network.forward_rows() == 10
    np.testing.assert_allclose(network.probabilities(images), whole, atol=1e-6)
