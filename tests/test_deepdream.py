"""DeepDream: the objective rises every octave (grey and colour models), the
fully-convolutional copy equals the model, and bad dream images fail clearly."""

import keras
import numpy as np
import pytest
from PIL import Image

from reportgen.deepdream import DeepDream, dream_extractor, fit_photo, load_photo
from reportgen.errors import ReportgenError
from reportgen.sections import deepdream


def small_cnn(input_shape, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.RandomFlip("horizontal", name="augment")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


@pytest.mark.parametrize("shape", [(16, 16, 1), (18, 14, 3)])
def test_objective_rises_in_every_octave(shape):
    model = small_cnn(shape)
    dreamer = DeepDream(model, ["c1", "c2"])
    assert dreamer.fully_convolutional
    photo = fit_photo(load_photo(), shape[-1], aspect=shape[0] / shape[1])
    weights = [np.array([[0.25] * 4, [0.0] * 4], np.float32),
               np.array([[1 / 6] * 6, [0, 0, 1, 0, 0, 0]], np.float32)]
    dream = dreamer.dream(photo, weights, octaves=3, steps=4, seed=0)
    assert len(dream.sizes) == 3 and dream.sizes[1] == shape[:2]  # one octave below the input size, two above
    assert dream.sizes[-1][0] > shape[0]
    assert np.all(dream.after > dream.before)
    assert [im.shape for im in dream.images] == [(2, *s, shape[-1]) for s in dream.sizes]
    assert all(im.min() >= 0 and im.max() <= 1 for im in dream.images)


def test_fully_convolutional_copy_equals_the_model():
    model = small_cnn((16, 16, 3))
    extractor, any_size = dream_extractor(model, ["c1", "c2"])
    assert any_size and extractor.input_shape[1:3] == (None, None)
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    direct = keras.Model(model.input, [model.get_layer("c1").output, model.get_layer("c2").output])
    # training=False: RandomFlip flips by default when a model is called directly.
    for a, b in zip(extractor(x, training=False), direct(x, training=False)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert extractor(np.zeros((1, 40, 30, 3), np.float32), training=False)[1].shape == (1, 19, 14, 6)


def test_branching_model_dreams_at_any_size():
    inputs = keras.Input((12, 12, 1))
    a = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="a")(inputs)
    b = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="b")(inputs)
    model = keras.Model(inputs, keras.layers.Add(name="sum")([a, b]))
    dreamer = DeepDream(model, ["sum"])
    assert dreamer.fully_convolutional  # the residual add is traced at any size too
    dream = dreamer.dream(np.full((30, 30, 1), 0.5, np.float32), [np.ones((1, 2), np.float32)], steps=3)
    assert dream.sizes[-1][0] > 12  # larger than the model's own input
    assert dream.after[0, 0] > dream.before[0, 0]


def test_default_photo_needs_no_download():
    photo = load_photo()
    assert photo.ndim == 3 and photo.shape[-1] == 3 and photo.dtype == np.float32
    assert photo.min() >= 0 and photo.max() <= 1 and photo.std() > 0.05
    grey = fit_photo(photo, 1, aspect=1.0)
    assert grey.shape == (min(photo.shape[:2]), min(photo.shape[:2]), 1)


def test_users_dream_image(tmp_path):
    path = tmp_path / "mine.png"
    Image.fromarray(np.full((20, 40), 200, np.uint8)).save(path)
    photo = load_photo(path)
    assert photo.shape == (20, 40, 3) and photo.max() == pytest.approx(200 / 255)


@pytest.mark.parametrize("content", [None, b"not an image", "folder"])
def test_unreadable_dream_image_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "dream.png"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ReportgenError) as info:
        load_photo(path)
    message = str(info.value)
    assert "dream image" in message and "dream.png" in message and "\n" not in message


def test_section_records_rising_objective_and_feature_vis(tiny_context):
    ctx = tiny_context
    ctx.quick = True
    ctx.extra["feature_vis"] = {"conv_b": {"images": np.full((6, 8, 8, 1), 0.5, np.float32)}}
    section = deepdream.build(ctx)
    assert section.data["dreams"][0]["objective"] == "weighted mix of all conv layers"
    for record in section.data["dreams"]:
        assert np.all(np.asarray(record["after"]) > np.asarray(record["before"]))
        assert record["rose_every_octave"]
    map_figure = section.figures[1]
    assert map_figure.numbers["feature_vis_shown"]
    assert map_figure.numbers["octave_1_after"] > map_figure.numbers["octave_1_before"]
    for figure in section.figures:
        assert (ctx.out_dir / figure.path).is_file()


def test_section_rejects_a_bad_dream_image(tiny_context, tmp_path):
    tiny_context.spec.dream_image = str(tmp_path / "missing.jpg")
    with pytest.raises(ReportgenError, match=r"missing\.jpg"):
        deepdream.build(tiny_context)
