"""Each foundation section's pictures and numbers, checked against a direct computation."""

import keras
import numpy as np
from PIL import Image

from reportgen.model import Network
from reportgen.sections import activations, class_maps, confusion, kernels, summary
from reportgen.util.imaging import maps_to_tiles


def load_png(ctx, rel_path) -> np.ndarray:
    return np.asarray(Image.open(ctx.out_dir / rel_path)).astype(np.float32) / 255


def test_activation_grid_tile_equals_the_layer_output(tiny_context):
    ctx = tiny_context
    section = activations.build(ctx)
    figure = next(f for f in section.figures if f.title == "conv_a")
    direct = keras.Model(ctx.model.input, ctx.model.get_layer("conv_a").output)(ctx.samples).numpy()
    grid = load_png(ctx, figure.path)
    # Row 0 of the grid: the first sample image, then map 0 of conv_a for it.
    expected = maps_to_tiles(direct[0:1, ..., 0])[0]
    h, w = expected.shape[:2]
    pad = 2
    tile = grid[pad : pad + h, 2 * pad + w : 2 * pad + 2 * w]
    assert np.abs(tile - expected).max() < 1.5 / 255
    assert figure.numbers["max_activation"] == float(direct.max())
    assert section.data["conv_a"]["samples"][0]["max"] == float(direct[0].max())
    assert {f.title for f in section.figures} == {"conv_a", "pool_a", "conv_b", "hidden", "out"}


def test_silent_maps_are_counted(tiny_context):
    ctx = tiny_context
    kernel, bias = ctx.model.get_layer("conv_a").get_weights()
    kernel[..., 1] = 0
    bias[1] = -1  # map 1 can never fire
    ctx.model.get_layer("conv_a").set_weights([kernel, bias])
    section = activations.build(ctx)
    assert section.data["conv_a"]["silent_maps_all_samples"] >= 1
    assert all(s["silent"] >= 1 for s in section.data["conv_a"]["samples"])


def test_confusion_matrix_counts_every_test_image(tiny_context):
    ctx = tiny_context
    section = confusion.build(ctx)
    cm = np.asarray(section.data["confusion_matrix"])
    assert cm.sum() == len(ctx.data.y_test)
    for t in range(3):
        for p in range(3):
            assert cm[t, p] == np.sum((ctx.data.y_test == t) & (ctx.predictions == p))
    assert section.figures[0].numbers["accuracy"] == np.mean(ctx.predictions == ctx.data.y_test)
    if "mistakes" in section.data:
        first = section.data["mistakes"][0]
        assert first["true"] != first["predicted"]


def test_kernel_numbers_match_the_weights(tiny_context):
    ctx = tiny_context
    section = kernels.build(ctx)
    kernel = ctx.model.get_layer("conv_b").get_weights()[0]
    norms = np.sqrt((kernel**2).sum(axis=(0, 1, 2)))
    numbers = section.figures[1].numbers
    assert np.isclose(numbers["l2_norm_max"], norms.max())
    assert numbers["filters"] == 6
    assert (ctx.out_dir / section.figures[1].path).is_file()


def test_compare_classes_picks_the_filter_that_differs_most(tiny_context):
    ctx = tiny_context
    section = class_maps.build(ctx)
    means = ctx.network.channel_stats(["conv_a"], ctx.data.x_test)["conv_a"].mean
    diff = means[ctx.data.y_test == 0].mean(axis=0) - means[ctx.data.y_test == 1].mean(axis=0)
    chosen = section.data["compare"]["layers"][0]
    assert chosen["filter"] == int(np.argmax(np.abs(diff)))
    assert np.isclose(chosen["mean_a"] - chosen["mean_b"], diff[chosen["filter"]], atol=1e-5)
    assert len(section.data["mean_activation"]) == 3  # conv_a, pool_a, conv_b


def test_the_test_pass_gives_probabilities_and_each_images_spatial_mean_max_and_its_position(tiny_context):
    ctx = tiny_context
    maps = ctx.network.outputs(["conv_a", "conv_b"], ctx.data.x_test)
    np.testing.assert_allclose(ctx.probabilities, ctx.model(ctx.data.x_test).numpy(), rtol=1e-5, atol=1e-6)
    for name, stats in ctx.conv_stats.items():
        np.testing.assert_allclose(stats.mean, maps[name].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats.max, maps[name].max(axis=(1, 2)), rtol=1e-5, atol=1e-6)
        flat = maps[name].reshape(len(maps[name]), -1, maps[name].shape[-1]).argmax(axis=1)  # first max, row-major
        np.testing.assert_array_equal(stats.peak_at, np.stack(np.divmod(flat, maps[name].shape[2]), axis=-1))
    assert set(ctx.conv_stats) == {"conv_a", "conv_b"}


def test_the_test_pass_reads_a_model_that_takes_any_size_at_the_images_size():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(1).random((5, 10, 14, 1), np.float32)
    network = Network(model)
    result = network.test_pass(images, [network.units[0].point.path], batch_size=2)
    maps = keras.Model(inputs, x)(images).numpy()  # (5, 8, 12, 3)
    stats = result.stats[network.units[0].point.path]
    np.testing.assert_allclose(result.probabilities, model(images).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.max, maps.max(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    flat = maps.reshape(5, -1, 3).argmax(axis=1)
    np.testing.assert_array_equal(stats.peak_at, np.stack(np.divmod(flat, 12), axis=-1))


def test_summary_counts_parameters(tiny_context):
    section = summary.build(tiny_context)
    assert section.data["total_params"] == tiny_context.model.count_params()
    assert sum(layer["params"] for layer in section.data["layers"]) == tiny_context.model.count_params()


def test_one_by_one_maps_are_scaled_over_the_samples_not_each_on_its_own(tiny_context):
    """A 1x1 map is a single value: scaled on its own it would always be the darkest colour."""
    count = len(tiny_context.samples)
    out = np.arange(count * 2, dtype=np.float32).reshape(count, 1, 1, 2)  # each map rises from sample to sample
    figure, _, _ = activations._conv_layer(tiny_context, "deep", out, list(range(count)))
    grid = np.asarray(Image.open(tiny_context.out_dir / figure.path).convert("RGB")).astype(int)
    first_map_column = grid[:, grid.shape[1] * 3 // (2 * 3) + 1]  # through the tiles of map 0
    assert len({tuple(pixel) for pixel in first_map_column}) > 3  # not one colour for every sample
    assert "each map scaled over the sample images" in figure.caption
