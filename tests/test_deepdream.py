"""DeepDream: dreams at the photo's size with the objective rising every octave,
tiles that cover the image and give the whole-image gradient, the stored SSIM
and objective gain against direct computations, and clear errors for bad photos."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage.metrics import structural_similarity

from reportgen.methods.deepdream import GRAY, DeepDream, Dream, dream_extractor, fit_photo, load_photo, resize, to_tiles
from reportgen.sections import deepdream
from reportgen.sections.units import LayerPictures
from reportgen.util.errors import ReportgenError


def small_cnn(input_shape, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.RandomFlip("horizontal", name="augment")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def pointwise_cnn(input_shape, seed: int = 0) -> keras.Model:
    """A 1x1 conv: every output pixel sees one input pixel, so tiles that split
    the image lose nothing at their seams."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(3, 1, activation="relu", bias_initializer="ones", name="c")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


def two_rows(model: keras.Model, layers: list[str]) -> list[np.ndarray]:
    """Row 0 weighs every map of every layer, row 1 one map of the last layer."""
    out = []
    for i, name in enumerate(layers):
        channels = model.get_layer(name).output.shape[-1]
        w = np.full((2, channels), 1 / channels, np.float32)
        w[1] = 0.0
        if i == len(layers) - 1:
            w[1, min(2, channels - 1)] = 1.0
        out.append(w)
    return out


@pytest.mark.parametrize("shape", [(16, 16, 1), (18, 14, 3)])
def test_dream_has_the_photos_size_and_rises_every_octave(shape):
    model = small_cnn(shape)
    dreamer = DeepDream(model, ["c1", "c2"])
    assert not dreamer.tiled
    photo = fit_photo(load_photo(), shape[-1], long_side=48)
    assert max(photo.shape[:2]) == 48 and photo.shape[-1] == shape[-1]
    dream = dreamer.dream(photo, two_rows(model, ["c1", "c2"]), octaves=3, scale=1.4, steps=[4, 3, 2], seed=0)
    assert dream.sizes[-1] == photo.shape[:2]
    assert dream.sizes[0] == (round(photo.shape[0] / 1.96), round(photo.shape[1] / 1.96))
    assert dream.final.shape == (2, *photo.shape)
    assert [im.shape for im in dream.images] == [(2, *s, shape[-1]) for s in dream.sizes]
    assert np.all(dream.after > dream.before)
    assert all(im.min() >= 0 and im.max() <= 1 for im in dream.images)
    assert not np.allclose(dream.final[0], photo, atol=0.01)  # it dreamed


def test_photo_keeps_its_aspect_and_turns_grey_by_luminance():
    photo = load_photo()  # 300 x 451
    grey = fit_photo(photo, 1, long_side=90)
    assert grey.shape == (60, 90, 1)
    direct = np.clip(resize(photo[None], (60, 90))[0].numpy(), 0, 1) @ GRAY
    np.testing.assert_allclose(grey[..., 0], direct, atol=1e-6)
    assert fit_photo(photo, 3, long_side=90).shape == (60, 90, 3)
    assert fit_photo(photo, 3, long_side=90, min_side=75).shape[0] == 75  # a tile must fit
    with pytest.raises(ReportgenError, match="2 channels"):
        fit_photo(photo, 2, long_side=90)


def test_objective_is_the_mean_squared_activation():
    model = pointwise_cnn((6, 6, 1))
    dreamer = DeepDream(model, ["c"])
    image = np.random.default_rng(0).random((1, 9, 7, 1), dtype=np.float32)
    kernel, bias = model.get_layer("c").get_weights()
    activation = np.maximum(image @ kernel[0, 0] + bias, 0)  # (1, 9, 7, 3)
    weights = np.array([[0.2, 0.3, 0.5]], np.float32)
    direct = np.sum(weights * np.mean(activation**2, axis=(1, 2)), axis=1)
    np.testing.assert_allclose(dreamer.objective(image, [weights]), direct, rtol=1e-5)


def test_tiles_cover_the_whole_image():
    h, w, tile = 11, 17, (4, 5)
    index = np.arange(h * w, dtype=np.float32).reshape(1, h, w, 1)
    tiles = to_tiles(tf.constant(np.concatenate([index, -index])), tile).numpy()
    per_image = 3 * 4  # ceil(11 / 4) x ceil(17 / 5), the last row and column moved back inside
    assert tiles.shape == (2 * per_image, *tile, 1)
    assert set(tiles[:per_image].ravel().tolist()) == set(index.ravel().tolist())
    np.testing.assert_array_equal(tiles[per_image:], -tiles[:per_image])  # rows stay apart
    np.testing.assert_array_equal(tiles[0, ..., 0], index[0, :4, :5, 0])
    np.testing.assert_array_equal(tiles[per_image - 1, ..., 0], index[0, -4:, -5:, 0])


@pytest.mark.parametrize("shift", [(0, 0), (3, -7)])
def test_tiled_gradient_equals_the_whole_image_gradient(shift):
    model = pointwise_cnn((4, 5, 1))
    whole, tiled = DeepDream(model, ["c"]), DeepDream(model, ["c"], tiled=True)
    assert not whole.tiled and tiled.tiled
    image = np.random.default_rng(1).random((2, 8, 10, 1), dtype=np.float32)  # 2 x 2 tiles of 4 x 5
    weights = [np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]], np.float32)]
    np.testing.assert_allclose(tiled.objective(image, weights), whole.objective(image, weights), rtol=1e-5)
    grad = whole.gradient(image, weights, shift)
    assert np.abs(grad).min() > 0
    np.testing.assert_allclose(tiled.gradient(image, weights, shift), grad, rtol=1e-4, atol=1e-7)


def test_a_fixed_size_model_dreams_on_tiles_at_the_photos_size():
    inputs = keras.Input((12, 12, 1))
    a = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="a")(inputs)
    b = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="b")(inputs)
    model = keras.Model(inputs, keras.layers.Add(name="sum")([a, b]))
    assert dream_extractor(model, ["sum"])[1]  # the residual add is traced at any size too ...
    dreamer = DeepDream(model, ["sum"], tiled=True)  # ... so tiles are forced here
    assert dreamer.tiled
    photo = fit_photo(load_photo(), 1, long_side=40, min_side=12)
    dream = dreamer.dream(photo, [np.ones((1, 2), np.float32)], octaves=4, scale=1.4, steps=3)
    assert dream.tiled and dream.final.shape == (1, *photo.shape)
    assert photo.shape[:2] == (27, 40)
    assert dream.sizes == [(14, 20), (19, 29), (27, 40)]  # the 10 x 15 octave is smaller than a tile
    assert np.all(dream.after > dream.before)
    with pytest.raises(ValueError, match="smaller than"):
        dreamer.dream(np.zeros((8, 30, 1), np.float32), [np.ones((1, 2), np.float32)])


def test_octave_steps_fall_by_the_octave_scale():
    assert deepdream.octave_steps(8, 6, 1.4) == [8, 6, 4, 3, 2, 1]
    assert deepdream.octave_steps(2, 4, 2.0) == [2, 1, 1, 1]


def test_map_choice_skips_a_brightness_map_that_clipping_stops():
    inputs = keras.Input((6, 8, 1))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="c")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.array([[[[1.0, -1.0]]]], np.float32), np.array([0.0, 1.0], np.float32)])
    dreamer = DeepDream(model, ["c"])  # map 0 = relu(x): brightness; map 1 = relu(1 - x): darkness
    photo = np.clip(0.9 + 0.05 * np.random.default_rng(0).standard_normal((12, 16, 1)), 0, 1).astype(np.float32)
    energies = [e[0] for e in dreamer.channel_energy(photo[None])]
    assert energies[0][0] > 10 * energies[0][1]  # the photo excites the brightness map most...
    assert deepdream.pick_maps(dreamer, photo, energies, count=1, steps=3) == [1]  # ...but only darkness can rise


def test_record_holds_ssim_gain_and_change_as_computed_directly():
    model = small_cnn((16, 16, 3))
    dreamer = DeepDream(model, ["c1", "c2"])
    photo = fit_photo(load_photo(), 3, long_side=40)
    dream = dreamer.dream(photo, two_rows(model, ["c1", "c2"]), octaves=2, steps=4, step_size=0.02)
    record = deepdream.dream_record(photo, dream, 1, "c2", 2)
    final = dream.final[1]
    per_channel = [structural_similarity(photo[..., c], final[..., c], data_range=1.0) for c in range(3)]
    assert record["ssim"] == pytest.approx(np.mean(per_channel), abs=1e-6)
    assert record["mean_abs_change"] == pytest.approx(float(np.mean(np.abs(final - photo))), rel=1e-5)
    photo_objective = dreamer.objective(photo[None], [w[1:] for w in two_rows(model, ["c1", "c2"])])[0]
    assert record["photo_objective"] == pytest.approx(photo_objective, rel=1e-5)
    final_objective = dreamer.objective(final[None], [w[1:] for w in two_rows(model, ["c1", "c2"])])[0]
    assert record["objective_gain"] == pytest.approx(final_objective / photo_objective, rel=1e-4)
    assert record["rose_every_octave"] and record["objective_gain"] > 1


def test_neither_an_unchanged_photo_nor_noise_meets_the_goal():
    photo = fit_photo(load_photo(), 1, long_side=64)
    noise = np.random.default_rng(0).random(photo.shape, dtype=np.float32)
    objective = np.array([1.0, 1.0], np.float32)
    unchanged_and_noise = Dream([photo.shape[:2]], [np.stack([photo, noise])], objective[None], np.array([[1.0, 9.0]]),
                                objective)
    same = deepdream.dream_record(photo, unchanged_and_noise, 0, "c", 0)
    assert same["ssim"] == pytest.approx(1.0) and same["objective_gain"] == pytest.approx(1.0)
    assert same["mean_abs_change"] == 0 and not same["meets_goal"]
    noisy = deepdream.dream_record(photo, unchanged_and_noise, 1, "c", 0)
    assert noisy["objective_gain"] == pytest.approx(9.0) and noisy["ssim"] < 0.1 and not noisy["meets_goal"]


def test_default_photo_needs_no_download():
    photo = load_photo()
    assert photo.ndim == 3 and photo.shape[-1] == 3 and photo.dtype == np.float32
    assert photo.min() >= 0 and photo.max() <= 1 and photo.std() > 0.05


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


def test_section_dreams_a_grey_photo_at_its_size_with_its_numbers(tiny_context):
    ctx = tiny_context
    ctx.quick = True
    grey = np.full((8, 8, 1), 0.5, np.float32)
    section = deepdream.build(ctx, {"conv_b": LayerPictures({u: grey for u in range(6)}, {}, {})})
    data = section.data
    assert data["channels"] == 1 and data["ssim_on"] == "the grey channel"
    assert max(data["size"]) == deepdream.QUICK_SIZE and data["octave_sizes"][-1] == tuple(data["size"])
    photo = np.asarray(Image.open(ctx.out_dir / data["photo_path"]), np.float32) / 255
    assert photo.shape == tuple(data["size"])  # saved as one grey channel
    assert data["dreams"][0]["objective"] == "weighted mix of all conv layers"
    assert len(section.figures) == len(data["dreams"]) == 1 + deepdream.QUICK_MAP_DREAMS
    for figure, record in zip(section.figures, data["dreams"]):
        assert np.all(np.asarray(record["after"]) > np.asarray(record["before"])) and record["rose_every_octave"]
        dream = np.asarray(Image.open(ctx.out_dir / figure.path), np.float32) / 255
        assert dream.shape == photo.shape
        # The stored SSIM is the one of the arrays; the 8-bit PNGs give nearly the same.
        assert record["ssim"] == pytest.approx(structural_similarity(photo, dream, data_range=1.0), abs=0.01)
        assert record["mean_abs_change"] == pytest.approx(np.mean(np.abs(dream - photo)), abs=0.005)
        assert figure.numbers["ssim"] == record["ssim"]
        assert figure.numbers["objective_gain"] == record["objective_gain"]
        assert record["meets_goal"] == (record["ssim"] >= 0.4 and record["objective_gain"] >= 1.5)
        assert (ctx.out_dir / record["octaves_path"]).is_file()
    assert section.figures[1].numbers["feature_vis_shown"]
    assert [row[1] for row in section.tables[0].rows] == [r["ssim"] for r in data["dreams"]]


def test_section_rejects_a_bad_dream_image(tiny_context, tmp_path):
    tiny_context.spec.dream_image = str(tmp_path / "missing.jpg")
    with pytest.raises(ReportgenError, match=r"missing\.jpg"):
        deepdream.build(tiny_context)
