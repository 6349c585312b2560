"""Saliency, SmoothGrad and Grad-CAM: shapes, pixels that cannot matter, Grad-CAM
equal to CAM on a GAP model, the deletion test, and the section's files."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from reportgen.attribution import Attributor, class_scores, confident_mistakes, deletion_test
from reportgen.sections import attribution


def cropping_model() -> keras.Model:
    """Ignores a 3-pixel border: no attribution may land there."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((14, 14, 2))
    x = keras.layers.Cropping2D(3)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_shapes_and_ignored_pixels():
    model = cropping_model()
    x = np.random.default_rng(0).random((5, 14, 14, 2), dtype=np.float32)
    att = Attributor(model, "conv")(x, np.array([0, 1, 2, 0, 1]), samples=4)
    for heat in (att.saliency, att.smoothgrad, att.gradcam):
        assert heat.shape == (5, 14, 14) and heat.min() >= 0
    border = np.ones((14, 14), bool)
    border[3:-3, 3:-3] = False
    assert att.saliency[:, border].max() == 0 and att.smoothgrad[:, border].max() == 0
    assert att.saliency[:, ~border].max() > 0


def test_grad_cam_equals_cam_on_a_global_average_pooling_model():
    """With GAP then a linear layer, Grad-CAM is relu(sum_c w[c, k] * A_c) / (h * w)."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6, 6, 1))
    a = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(a)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))
    x = np.random.default_rng(1).random((3, 6, 6, 1), dtype=np.float32)
    classes = np.array([0, 1, 1])
    att = Attributor(model, "conv")(x, classes, samples=1)
    maps = keras.Model(model.input, a)(x).numpy()
    w = model.get_layer("out").get_weights()[0]  # (3, 2)
    cam = np.maximum(np.einsum("nhwc,cn->nhw", maps, w[:, classes]) / 36, 0)
    np.testing.assert_allclose(att.gradcam, cam, rtol=1e-4, atol=1e-6)


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
    att = Attributor(model)(image, np.array([0]), samples=2)
    np.testing.assert_allclose(att.saliency, 50.0)
    assert att.gradcam is None


def test_deletion_of_the_pixels_that_matter_hurts_more_than_random():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))
    kernel = np.zeros((36, 2), np.float32)
    kernel[:7, 0] = 3.0  # class 0 reads only the first 7 pixels (20% of 36)
    model.get_layer("out").set_weights([kernel, np.zeros(2)])
    x = np.full((2, 6, 6, 1), 0.5, np.float32)
    heat = np.zeros((2, 6, 6))
    heat.reshape(2, -1)[:, :7] = 1.0
    deletion = deletion_test(model, x, np.array([0, 0]), heat, attributor=Attributor(model))
    np.testing.assert_allclose(deletion.original, 1 / (1 + np.exp(-10.5)), rtol=1e-5)
    assert np.all(deletion.drop_top > deletion.drop_random)
    np.testing.assert_allclose(deletion.score_drop_top, 10.5, rtol=1e-5)
    assert np.all(deletion.score_drop_random < 10.5)


def test_confident_mistakes_come_first():
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    assert confident_mistakes(labels, probs) == [1, 3, 2]
    assert confident_mistakes(labels, probs, limit=1) == [1]


def test_section_files_and_numbers(tiny_context):
    ctx = tiny_context
    section = attribution.build(ctx)
    records = section.data["images"]
    groups = section.data["groups"]
    assert [r["index"] for r in records] == groups["samples"] + groups["mistakes"]
    for r in records:
        assert r["p_predicted"] == pytest.approx(ctx.probabilities[r["index"]].max())
    for figure in section.figures:
        assert (ctx.out_dir / figure.path).is_file()
        assert figure.numbers["layer"] == "conv_b"
    assert len(section.tables) == len(section.figures)
    assert len(section.tables[0].rows) == len(groups["samples"])
