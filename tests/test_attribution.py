"""Saliency, SmoothGrad, Integrated Gradients, Grad-CAM, Grad-CAM++ and the guided-backprop control,
each against a direct computation on a tiny model, and the section's numbers and files."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_dataset
from PIL import Image

from reportgen.inputs.config import ModelSpec
from reportgen.methods.attribution import (
    CONTROL,
    METHODS,
    Attributor,
    class_scores,
    confident_mistakes,
    integrated_gradients_baseline,
    score_and_probability,
)
from reportgen.methods.sanity import SANITY_THRESHOLD
from reportgen.model import Network
from reportgen.sections import attribution
from reportgen.sections.context import ModelContext


def cropping_model() -> keras.Model:
    """Ignores a 3-pixel border: no attribution may land there."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((14, 14, 2))
    x = keras.layers.Cropping2D(3)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def same_size_model() -> keras.Model:
    """A conv layer at the input resolution (so Grad-CAM needs no resize) and a separate softmax,
    so the pre-softmax logits are a layer output the test can read directly."""
    keras.utils.set_random_seed(6)
    inputs = keras.Input((5, 5, 1))
    a = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(a)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    logits = keras.layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="softmax")(logits))


def activations_and_gradients(model, x, classes):
    """A of the conv layer, dS/dA and S for the pre-softmax score S, with a plain tape on the model's own layers."""
    probe = keras.Model(model.input, [model.get_layer("conv").output, model.get_layer("logits").output])
    with tf.GradientTape() as tape:
        a, logits = probe(x)
        score = tf.gather(logits, classes, axis=1, batch_dims=1)
    return a.numpy(), tape.gradient(score, a).numpy(), score.numpy()


def test_shapes_and_ignored_pixels():
    model = cropping_model()
    x = np.random.default_rng(0).random((5, 14, 14, 2), dtype=np.float32)
    att = Attributor(model, "conv")(x, np.array([0, 1, 2, 0, 1]), samples=4, steps=8, control=True)
    assert set(att.maps) == {*METHODS, CONTROL}
    for name, heat in att.maps.items():
        assert heat.shape == (5, 14, 14)
        if name != "integrated_gradients":  # the only signed map
            assert heat.min() >= 0
    border = np.ones((14, 14), bool)
    border[3:-3, 3:-3] = False
    for name in ("saliency", "smoothgrad", "integrated_gradients", CONTROL):
        assert np.abs(att.maps[name][:, border]).max() == 0, name
        assert np.abs(att.maps[name][:, ~border]).max() > 0, name


def test_grad_cam_equals_cam_on_a_global_average_pooling_model():
    """With GAP then a linear layer, Grad-CAM is relu(sum_c w[c, k] * A_c) / (h * w)."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6, 6, 1))
    a = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(a)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))
    x = np.random.default_rng(1).random((3, 6, 6, 1), dtype=np.float32)
    classes = np.array([0, 1, 1])
    att = Attributor(model, "conv")(x, classes, samples=1, steps=2)
    maps = keras.Model(model.input, a)(x).numpy()
    w = model.get_layer("out").get_weights()[0]  # (3, 2)
    cam = np.maximum(np.einsum("nhwc,cn->nhw", maps, w[:, classes]) / 36, 0)
    np.testing.assert_allclose(att.maps["gradcam"], cam, rtol=1e-4, atol=1e-6)


def test_grad_cam_plus_plus_matches_the_closed_form_with_exp_score():
    """Chattopadhay et al.'s closed form for Y = exp(S), computed in numpy from A and dS/dA as
    tf-keras-vis does (without its alpha renormalisation), equals our map times exp(S)."""
    model = same_size_model()
    x = np.random.default_rng(2).random((4, 5, 5, 1), dtype=np.float32)
    classes = np.array([0, 1, 2, 1])
    att = Attributor(model, "conv")(x, classes, samples=1, steps=2)
    a, g, score = activations_and_gradients(model, x, classes)
    e = np.exp(score)[:, None, None, None]
    first, second, third = e * g, e * g**2, e * g**3
    denominator = 2 * second + third * a.sum(axis=(1, 2), keepdims=True)
    alpha = np.where(second != 0, second / np.where(second != 0, denominator, 1), 0)
    weights = (alpha * np.maximum(first, 0)).sum(axis=(1, 2), keepdims=True)
    expected = np.maximum((weights * a).sum(axis=-1), 0)
    assert expected.max() > 0 and (g > 0).any() and (g < 0).any()
    np.testing.assert_allclose(att.maps["gradcam_plus_plus"] * e[..., 0], expected, rtol=1e-4, atol=1e-6)
    # Grad-CAM from the same activations and gradients.
    gradcam = np.maximum((g.mean(axis=(1, 2), keepdims=True) * a).sum(axis=-1), 0)
    np.testing.assert_allclose(att.maps["gradcam"], gradcam, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_are_complete_and_converge_with_steps():
    """The attributions sum to S(x) - S(black), read here from the model's own pre-softmax layer;
    the trapezoidal path sum gets there as the steps grow."""
    model = same_size_model()
    x = np.random.default_rng(3).random((6, 5, 5, 1), dtype=np.float32)
    classes = np.array([0, 1, 2, 0, 1, 2])
    logits = keras.Model(model.input, model.get_layer("logits").output)
    score = logits(x).numpy()[np.arange(6), classes]
    baseline_score = logits(np.zeros_like(x)).numpy()[np.arange(6), classes]
    fine = Attributor(model, "conv")(x, classes, samples=1, steps=128)
    np.testing.assert_allclose(fine.score, score, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fine.baseline_score, baseline_score, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fine.maps["integrated_gradients"].sum(axis=(1, 2)), score - baseline_score,
                               rtol=1e-2, atol=1e-3)
    assert fine.completeness_error.max() < 1e-2
    coarse = Attributor(model, "conv")(x, classes, samples=1, steps=2)
    assert coarse.completeness_error.mean() > fine.completeness_error.mean()


def test_integrated_gradients_of_a_linear_model_are_input_times_weight():
    keras.utils.set_random_seed(7)
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(keras.layers.Flatten()(inputs)))
    x = np.random.default_rng(4).random((3, 4, 4, 2), dtype=np.float32)
    classes = np.array([2, 0, 1])
    att = Attributor(model)(x, classes, samples=2, steps=3)
    w = model.get_layer("out").get_weights()[0].reshape(4, 4, 2, 3)
    expected = np.einsum("nhwc,hwcn->nhw", x - integrated_gradients_baseline(x), w[..., classes])
    np.testing.assert_allclose(att.maps["integrated_gradients"], expected, rtol=1e-5, atol=1e-6)
    assert "gradcam" not in att.maps and att.layer is None


def test_smoothgrad_is_the_mean_gradient_over_the_noisy_copies():
    model = same_size_model()
    x = np.random.default_rng(5).random((2, 5, 5, 1), dtype=np.float32)
    classes = np.array([1, 2])
    att = Attributor(model, "conv")(x, classes, samples=5, noise=0.2, steps=4, seed=9)
    noisy = x[:, None] + np.random.default_rng(9).normal(0, 0.2, (2, 5, 5, 5, 1)).astype(np.float32)
    logits = keras.Model(model.input, model.get_layer("logits").output)
    rows = tf.constant(noisy.reshape(10, 5, 5, 1))
    with tf.GradientTape() as tape:
        tape.watch(rows)
        score = tf.reduce_sum(tf.gather(logits(rows), np.repeat(classes, 5), axis=1, batch_dims=1))
    grads = tape.gradient(score, rows).numpy().reshape(2, 5, 5, 5, 1)
    np.testing.assert_allclose(att.maps["smoothgrad"], np.abs(grads.mean(axis=1)).max(axis=-1), rtol=1e-4, atol=1e-6)


def test_guided_backprop_control_matches_the_rule_by_hand():
    """One ReLU layer: the guided gradient keeps d/dh only where it is positive and h fires."""
    keras.utils.set_random_seed(8)
    inputs = keras.Input((3, 3, 1))
    h = keras.layers.Dense(5, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(h))
    x = np.random.default_rng(6).normal(size=(4, 3, 3, 1)).astype(np.float32)
    classes = np.array([0, 1, 1, 0])
    w1, b1 = model.get_layer("hidden").get_weights()
    w2 = model.get_layer("out").get_weights()[0]
    pre = x.reshape(4, 9) @ w1 + b1
    upstream = w2[:, classes].T  # (4, 5)
    guided = (upstream * (upstream > 0) * (pre > 0)) @ w1.T
    np.testing.assert_allclose(Attributor(model).guided_backprop(x, classes), np.abs(guided).reshape(4, 3, 3),
                               rtol=1e-5, atol=1e-6)


def test_gradients_use_the_logit_not_the_probability():
    logits = tf.constant([[2.0], [-1.0]])
    np.testing.assert_array_equal(class_scores(logits, tf.constant([1, 0])).numpy(), [2.0, 1.0])
    keras.utils.set_random_seed(5)
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))
    kernel = np.zeros((16, 2), np.float32)
    kernel[:, 0] = 50.0
    model.get_layer("out").set_weights([kernel, np.zeros(2)])
    image = np.ones((1, 4, 4, 1), np.float32)  # p(class 0) ~ 1: the softmax gradient would vanish
    att = Attributor(model)(image, np.array([0]), samples=2, steps=4)
    np.testing.assert_allclose(att.maps["saliency"], 50.0)


def test_score_and_probability_from_logits():
    logits = np.array([[1.0, 3.0, -2.0], [0.5, 0.5, 0.5]])
    score, p = score_and_probability(logits, np.array([1, 2]))
    np.testing.assert_allclose(score, [3.0, 0.5])
    np.testing.assert_allclose(p, [np.exp(3) / np.exp([1, 3, -2]).sum(), 1 / 3])
    score, p = score_and_probability(np.array([[2.0], [2.0]]), np.array([1, 0]))
    np.testing.assert_allclose(score, [2.0, -2.0])
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))])


def test_confident_mistakes_come_first():
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    assert confident_mistakes(labels, probs) == [1, 3, 2]
    assert confident_mistakes(labels, probs, limit=1) == [1]


def test_section_files_and_numbers(tiny_context):
    ctx = tiny_context
    section = attribution.build(ctx)
    data = section.data
    records, groups = data["images"], data["groups"]
    assert [r["index"] for r in records] == groups["samples"] + groups["mistakes"]
    for r in records:
        assert r["p_predicted"] == pytest.approx(ctx.probabilities[r["index"]].max())
        assert set(r["methods"]) == {*METHODS, CONTROL}
    assert data["randomized_layers"] == ["out", "hidden", "conv_b"]
    assert data["ig_completeness_error_max"] < 0.05
    comparison = data["comparison"]
    for name, numbers in comparison.items():
        drops = [r["methods"][name]["logit_drop_top"] for r in records]
        rhos = [r["methods"][name]["rank_correlation"] for r in records]
        random = [r["logit_drop_random"] for r in records]
        assert numbers["logit_drop_top_mean"] == pytest.approx(np.mean(drops))
        assert numbers["top_beats_random_fraction"] == pytest.approx(np.mean(np.array(drops) > random))
        assert numbers["rank_correlation_mean"] == pytest.approx(np.mean(rhos))
        assert numbers["sanity_check_passed"] == (np.mean(rhos) < SANITY_THRESHOLD)
        failing_note = any(n.startswith(attribution.LABELS[name]) and "FAILS" in n for n in section.notes)
        assert failing_note == (not numbers["sanity_check_passed"])
    leaders = data["most_faithful"]
    if leaders:
        best = max((m for m in METHODS if comparison[m]["beats_random"]),
                   key=lambda m: comparison[m]["logit_drop_top_mean"])
        assert leaders[0] == best and all(comparison[m]["beats_random"] for m in leaders)
    assert data["no_method_beats_random"] == (not any(comparison[m]["beats_random"] for m in METHODS))

    group_figures = section.figures[:-1]
    for figure, group in zip(group_figures, (g for g in groups if groups[g])):
        assert figure.numbers["layer"] == "conv_b"
        grid = np.asarray(Image.open(ctx.out_dir / figure.path))
        tile = 12 * 8 + 2  # 12x12 images enlarged 8x, plus the padding
        assert grid.shape[:2] == (len(groups[group]) * tile + 2, (1 + len(METHODS)) * tile + 2)
    sanity = section.figures[-1]
    assert (ctx.out_dir / sanity.path).is_file()
    assert sanity.numbers["randomized_layers"] == "out, hidden, conv_b"
    # Tables pair with figures: one per group, then the method comparison beside the sanity figure.
    assert len(section.tables) == len(section.figures)
    assert len(section.tables[0].rows) == len(groups["samples"])
    table = section.tables[-1]
    assert len(table.rows) == len(METHODS) + 1
    assert [row[-1] for row in table.rows] == ["passed" if comparison[m]["sanity_check_passed"] else "FAILED"
                                               for m in comparison]


def test_the_randomized_network_is_explained_and_the_trained_one_is_not_changed():
    """Maps of the randomised network differ from the trained one's, and an attributor built on the
    trained model afterwards gives its maps exactly as before."""
    model = same_size_model()
    x = np.random.default_rng(7).random((3, 5, 5, 1), dtype=np.float32)
    classes = np.array([0, 2, 1])
    before = Attributor(Network(model), "conv")(x, classes, samples=2, steps=4, control=True)
    randomized = Network(model).randomized(["logits", "hidden"], seed=1)
    after_random = Attributor(randomized, "conv")(x, classes, samples=2, steps=4, control=True)
    again = Attributor(Network(model), "conv")(x, classes, samples=2, steps=4, control=True)
    for name, heat in before.maps.items():
        np.testing.assert_allclose(again.maps[name], heat, rtol=1e-6, atol=1e-7)
        if heat.max() > 0:
            assert not np.allclose(after_random.maps[name], heat), name


def test_small_batches_give_the_same_maps_as_one_batch():
    """Memory-bounded batches (one image per chunk, its rows split over calls) change nothing."""
    model = same_size_model()
    x = np.random.default_rng(8).random((3, 5, 5, 1), dtype=np.float32)
    classes = np.array([2, 0, 1])
    whole = Attributor(model, "conv")(x, classes, samples=2, steps=4, seed=1, control=True)
    split = Attributor(model, "conv")(x, classes, samples=2, steps=4, seed=1, control=True, batch_size=5)
    for name, heat in whole.maps.items():
        np.testing.assert_allclose(split.maps[name], heat, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(split.ig_total, whole.ig_total, rtol=1e-5, atol=1e-7)


def sigmoid_cnn() -> keras.Model:
    keras.utils.set_random_seed(9)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(keras.layers.Flatten()(x)))


def dense_only() -> keras.Model:
    keras.utils.set_random_seed(10)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Dense(8, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))


@pytest.mark.parametrize("make_model", [sigmoid_cnn, dense_only])
def test_section_on_a_sigmoid_model_and_a_model_without_conv_layers(tmp_path, make_model):
    model, data = make_model(), tiny_dataset(num_classes=2, n=20)
    spec = ModelSpec(name="edge", dataset="mnist", architecture="mnist_3conv")
    network = Network(model)
    ctx = ModelContext(spec=spec, network=network, data=data, out_dir=tmp_path)
    section = attribution.build(ctx)
    has_conv = make_model is sigmoid_cnn
    expected = [*METHODS, CONTROL] if has_conv else ["saliency", "smoothgrad", "integrated_gradients", CONTROL]
    assert list(section.data["comparison"]) == expected
    assert section.data["randomized_layers"] == (["out", "conv"] if has_conv else ["out", "hidden"])
    if has_conv:  # one sigmoid unit: the predicted class's score is the log-odds of its probability
        for r in section.data["images"]:
            assert r["logit"] == pytest.approx(np.log(r["p_predicted"] / (1 - r["p_predicted"])), abs=1e-3)
