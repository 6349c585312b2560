"""The model-randomisation sanity check: the randomised copy, the rank correlation, and the verdict
on a map that ignores the model against saliency on a trained one."""

import keras
import numpy as np
import pytest
from conftest import tiny_cnn
from scipy.stats import spearmanr
from skimage.filters import sobel

from reportgen.methods.attribution import Attributor
from reportgen.methods.sanity import SANITY_THRESHOLD, cascade_layers, passes, rank_correlation
from reportgen.model import INPUT, Network


def test_cascade_runs_from_the_output_down_to_the_named_layer():
    model = tiny_cnn()
    assert cascade_layers(model, "conv_b") == ["out", "hidden", "conv_b"]
    assert cascade_layers(model) == ["out", "hidden", "conv_b", "conv_a"]


def randomized_weights(network: Network) -> dict[str, list[np.ndarray]]:
    """Per path, the weights of the layer that computes it in the network's graph."""
    return {node.path: [np.array(w) for w in node.tensor._keras_history.operation.weights]
            for node in network.graph.nodes.values() if node.path != INPUT and node.layer.weights}


def test_randomized_network_changes_exactly_the_chosen_layers_and_leaves_the_original_untouched():
    model = tiny_cnn()
    for name in ("hidden", "out"):  # trained-looking biases, so a re-initialised (zero) bias shows
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([kernel, bias + 0.5])
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}
    x = np.random.default_rng(0).random((4, 12, 12, 1), dtype=np.float32)
    outputs = model(x).numpy()
    chosen = ["out", "hidden"]
    copy = Network(model).randomized(chosen, seed=3)

    after = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    assert all(np.array_equal(a, b) for name in before for a, b in zip(before[name], after[name]))
    np.testing.assert_array_equal(model(x).numpy(), outputs)
    copied = randomized_weights(copy)
    assert set(copied) == set(before)
    for name in before:
        same = [np.array_equal(a, b) for a, b in zip(before[name], copied[name])]
        if name in chosen:
            kernel, bias = copied[name]
            assert not same[0] and np.all(bias == 0)  # the layer's own initializers: Glorot kernel, zero bias
            limit = np.sqrt(6 / sum(kernel.shape))
            assert np.abs(kernel).max() <= limit and kernel.std() > limit / 4
        else:
            assert all(same), name
    assert not np.allclose(copy.probabilities(x), outputs)
    np.testing.assert_array_equal(model(x).numpy(), outputs)

    again = randomized_weights(Network(model).randomized(chosen, seed=3))
    other = randomized_weights(Network(model).randomized(chosen, seed=4))
    assert all(np.array_equal(a, b) for name in copied for a, b in zip(copied[name], again[name]))
    assert not np.array_equal(copied["out"][0], other["out"][0])


def test_randomized_layers_inside_a_nested_base_and_a_bad_name():
    keras.utils.set_random_seed(1)
    base = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3, name="conv"),
                             keras.layers.Conv2D(2, 3, name="top_conv")], name="base")
    model = keras.Sequential([keras.Input((6, 6, 1)), base, keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(2, name="out")])
    assert cascade_layers(model, "base/top_conv") == ["out", "base/top_conv"]
    copy = randomized_weights(Network(model).randomized(["out", "base/top_conv"], seed=0))
    np.testing.assert_array_equal(copy["base/conv"][0], base.get_layer("conv").get_weights()[0])
    assert not np.array_equal(copy["base/top_conv"][0], base.get_layer("top_conv").get_weights()[0])
    with pytest.raises(ValueError, match="nope"):
        cascade_layers(model, "nope")


def test_rank_correlation_is_spearman_per_image():
    rng = np.random.default_rng(2)
    a = np.round(rng.random((6, 7, 5)), 1)  # many ties
    b = a + rng.normal(0, 0.3, a.shape)
    b[3] = np.round(rng.random((7, 5)), 1)
    rho = rank_correlation(a, b)
    for i in range(6):
        assert rho[i] == pytest.approx(spearmanr(a[i].ravel(), b[i].ravel()).statistic)
    assert rho[0] > 0.5 and abs(rho[3]) < 0.5
    constant = np.zeros_like(a)
    np.testing.assert_array_equal(rank_correlation(a, constant), 0.0)  # scipy says nan: no ranking to compare


def bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Faint noise with a bright horizontal bar (class 0), vertical bar (1) or square (2) somewhere."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 16, 16, 1), dtype=np.float32) * 0.2
    y = np.arange(n) % 3
    for i, (r, c) in enumerate(rng.integers(2, 12, (n, 2))):
        if y[i] == 0:
            x[i, r, c - 2 : c + 3] = 1
        elif y[i] == 1:
            x[i, r - 2 : r + 3, c] = 1
        else:
            x[i, r : r + 2, c : c + 2] = 1
    return x, y


def trained_bar_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(h)
    h = keras.layers.Dense(16, activation="relu", name="hidden")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = bars(900, 0)
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model


def test_a_map_that_ignores_the_model_fails_while_saliency_on_a_trained_model_passes():
    model = trained_bar_model()
    x, y = bars(30, 1)
    assert model.evaluate(x, y, verbose=0)[1] > 0.9
    classes = model.predict(x, verbose=0).argmax(axis=1)
    copy = Network(model).randomized(cascade_layers(model, "conv_b"), seed=0)
    saliency = Attributor(model, "conv_b")(x, classes, steps=4).maps["saliency"]
    randomized = Attributor(copy, "conv_b")(x, classes, steps=4).maps["saliency"]
    rho = rank_correlation(saliency, randomized)
    assert rho.mean() < SANITY_THRESHOLD and passes(rho)
    # The image itself, or its edges, as a "map" is the same whichever model is asked.
    for blind in (x[..., 0], np.stack([sobel(image[..., 0]) for image in x])):
        rho = rank_correlation(blind, blind.copy())
        np.testing.assert_allclose(rho, 1.0)
        assert not passes(rho)
