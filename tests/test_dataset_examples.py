"""Receptive fields against a direct gradient check, the top-k test images against a
direct pass, and the units section's files, proof numbers and pages."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from reportgen.build.render import render_page
from reportgen.methods.dataset_examples import dataset_top_k
from reportgen.model import Network
from reportgen.sections import units


def geometry_model() -> keras.Model:
    """Positive linear layers of every geometry the receptive-field code handles."""
    ones = {"kernel_initializer": "ones", "bias_initializer": "zeros"}
    inputs = keras.Input((23, 21, 1))
    x = keras.layers.Conv2D(1, 3, padding="same", name="same3", **ones)(inputs)
    x = keras.layers.ZeroPadding2D(((1, 2), (0, 1)), name="zpad")(x)
    x = keras.layers.Conv2D(1, (3, 2), strides=2, padding="same", name="same_s2", **ones)(x)
    x = keras.layers.AveragePooling2D(2, strides=1, name="avg")(x)
    x = keras.layers.Conv2D(1, 2, dilation_rate=2, name="dilated", **ones)(x)
    x = keras.layers.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    x = keras.layers.Activation("linear", name="act")(x)
    x = keras.layers.Conv2D(1, 3, strides=(2, 1), name="valid_s2", **ones)(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("layer", ["same3", "zpad", "same_s2", "avg", "dilated", "crop", "act", "valid_s2"])
def test_receptive_field_box_matches_the_gradient(layer):
    model = geometry_model()
    rf = Network(model).receptive_field(layer)
    extractor = keras.Model(model.input, model.get_layer(layer).output)
    assert rf.output_size == tuple(extractor.output.shape[1:3])
    h, w = rf.output_size
    every_unit = np.array([(i, y, x, 0) for i, (y, x) in enumerate(np.ndindex(h, w))])
    x = tf.ones((h * w, 23, 21, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(tf.gather_nd(extractor(x), every_unit))
    grad = tape.gradient(score, x).numpy()[..., 0]
    checked = 0
    for i, y, xx, _ in every_unit:
        rows, cols = np.nonzero(grad[i])
        if not len(rows):  # a unit in a zero-padding border sees nothing at all
            continue
        y0, y1, x0, x1 = rf.box(y, xx)
        assert (rows.min(), rows.max() + 1) == (max(y0, 0), min(y1, 23))
        assert (cols.min(), cols.max() + 1) == (max(x0, 0), min(x1, 21))
        checked += 1
    assert checked >= h * w // 2


def test_receptive_field_crop_pads_outside_the_image():
    model = geometry_model()
    rf = Network(model).receptive_field("same3")
    image = np.arange(23 * 21, dtype=np.float32).reshape(1, 23, 21, 1)
    crop = rf.crop(image, np.array([[0, 5]]), fill=-1)
    assert crop.shape == (1, 3, 3, 1)
    np.testing.assert_array_equal(crop[0, 0, :, 0], [-1, -1, -1])
    np.testing.assert_array_equal(crop[0, 1:, :, 0], image[0, 0:2, 4:7, 0])
    two = np.concatenate([image, image + 1000])
    by_id = rf.crop(two, np.array([[0, 5], [4, 20]]), fill=-1, ids=np.array([1, 0]))
    np.testing.assert_array_equal(by_id[0], crop[0] + np.where(crop[0] == -1, 0, 1000))
    np.testing.assert_array_equal(by_id[1, :, 2, 0], [-1, -1, -1])
    np.testing.assert_array_equal(by_id[1, :, :2, 0], image[0, 3:6, 19:21, 0])


def test_a_field_larger_than_the_image_is_cropped_to_the_whole_image():
    inputs = keras.Input((9, 20, 1))
    x = keras.layers.Conv2D(1, 5, padding="same", name="a")(inputs)
    x = keras.layers.Conv2D(1, 5, padding="same", name="b")(x)
    rf = Network(keras.Model(inputs, x)).receptive_field("b")
    assert rf.size == (9, 9) and rf.crop_size == (9, 9)  # exactly the image's height: no overhang yet
    rf = Network(keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", name="c")(x))).receptive_field("c")
    assert rf.size == (11, 11) and rf.crop_size == (9, 11)
    image = np.arange(9 * 20, dtype=np.float32).reshape(1, 9, 20, 1)
    crops = rf.crop(image, np.array([[0, 0], [8, 10]]), fill=-1, ids=np.array([0, 0]))
    assert crops.shape == (2, 9, 11, 1)
    np.testing.assert_array_equal(crops[1, :, :, 0], image[0, :, 5:16, 0])  # whole height, the field's width
    np.testing.assert_array_equal(crops[0, :, 5:, 0], image[0, :, :6, 0])
    assert (crops[0, :, :5] == -1).all()


def test_dataset_top_k_equals_a_full_pass(tiny_context):
    ctx = tiny_context
    x = ctx.data.x_test
    result = dataset_top_k(ctx.model, ["conv_a", "conv_b"], x, k=5, batch_size=17)
    for name in ("conv_a", "conv_b"):
        a = keras.Model(ctx.model.input, ctx.model.get_layer(name).output)(x).numpy()
        spatial_max = a.max(axis=(1, 2))  # (N, C)
        ex = result[name]
        np.testing.assert_allclose(ex.values, -np.sort(-spatial_max, axis=0)[:5].T, rtol=1e-5)
        np.testing.assert_allclose(ex.dataset_max, spatial_max.max(axis=0), rtol=1e-5)
        np.testing.assert_allclose(ex.fire_rate, (spatial_max > 0).mean(axis=0))
        for c in range(a.shape[-1]):
            for r in range(5):
                i, (y, xx) = ex.indices[c, r], ex.positions[c, r]
                assert a[i, y, xx, c] == pytest.approx(ex.values[c, r], rel=1e-5)


def test_units_section_files_proof_and_pages(tiny_context):
    ctx = tiny_context
    weights = [w.copy() for w in ctx.model.get_weights()]
    section = units.build(ctx)
    assert all(np.array_equal(a, b) for a, b in zip(weights, ctx.model.get_weights()))
    for figure in section.figures:
        assert (ctx.out_dir / figure.path).is_file()
    for name in ("conv_a", "conv_b"):
        for proof in section.data[name]["projection_proof"].values():
            assert proof["max_abs_outside_rf"] == 0.0 and proof["max_abs_crop_difference"] == 0.0
        top = section.data[name]["top"]
        a = keras.Model(ctx.model.input, ctx.model.get_layer(name).output)(ctx.data.x_test).numpy()
        i, (y, x) = top["test_index"][0, 0], top["position"][0, 0]
        assert a[i, y, x, 0] == pytest.approx(top["activation"][0, 0], rel=1e-5)
    paths = [page.path for page in section.pages]
    assert "conv_a/index.html" in paths and "conv_a/3.html" in paths and "conv_b/5.html" in paths
    json.dumps(section.to_json())  # report.json-ready
    report = {"model": {"name": "tiny <b>"}}
    for page in section.pages:
        images = [page.context.get("projections", page.context.get("examples_image"))]
        images += [e["image"] for e in page.context.get("examples", [])]
        assert all((ctx.out_dir / image).is_file() for image in images)
        render_page(ctx.out_dir, report, section, page)
    html = (ctx.out_dir / "conv_a" / "1.html").read_text()
    assert 'href="0.html"' in html and 'href="2.html"' in html and "../img/units/conv_a/1-top-1.png" in html
    assert "tiny &lt;b&gt;" in html
    md = (ctx.out_dir / "conv_b" / "index.md").read_text()
    assert "(../conv_a/index.md)" in md and "(0.md)" in md
