"""The feature-visualization engine on tiny models: it optimises, it batches
without changing results, it is deterministic, and its proof numbers are right."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_cnn

from reportgen.methods import featvis
from reportgen.methods.featvis import (
    FeatVisSettings,
    channel,
    class_logit,
    layer_mean,
    neuron,
    visualize_classes,
    visualize_filters,
    visualize_model,
)
from reportgen.methods.featvis.objectives import LOGITS
from reportgen.methods.featvis.params import FFTParam, PixelParam, from_unit_range, to_unit_range
from reportgen.methods.featvis.probes import OPTIMISE, PLAIN, WARM_UP, layer_probe, logit_probe
from reportgen.methods.featvis.regularizers import total_variation
from reportgen.methods.featvis.transforms import jitter
from reportgen.sections import feature_vis

FAST = FeatVisSettings(steps=48)


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


def test_optimised_activation_rises_above_the_random_start(model):
    start = visualize_filters(model, "conv_b", settings=FeatVisSettings(steps=1, warmup_steps=0), seed=0)
    optimised = visualize_filters(model, "conv_b", settings=FAST, seed=0)
    assert np.all(optimised.activation >= start.activation)  # a unit that never fires stays at 0
    assert np.sum(optimised.activation > start.activation) >= 3
    assert optimised.activation.mean() > 2 * max(start.activation.mean(), 1e-3)


def test_batched_and_one_at_a_time_give_the_same_images(model):
    units = np.array([0, 3, 5])
    batched = visualize_filters(model, "conv_b", units, FAST, seed=3)
    for i, unit in enumerate(units):
        alone = visualize_filters(model, "conv_b", np.array([unit]), FAST, seed=3)
        np.testing.assert_allclose(alone.activation[0], batched.activation[i], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(alone.images[0], batched.images[i], atol=1e-3)


def test_chunking_does_not_change_results(model):
    whole = visualize_filters(model, "conv_b", settings=FAST, seed=1)
    settings = FeatVisSettings(steps=48, chunk_size=4)
    chunked = visualize_filters(model, "conv_b", settings=settings, seed=1)
    np.testing.assert_allclose(whole.activation, chunked.activation, rtol=1e-3, atol=1e-4)


def test_one_optimisation_for_the_whole_model_gives_what_each_layer_gets_alone(model):
    settings = FeatVisSettings(steps=48, chunk_size=5)  # 4 + 2 + 3 slots: each layer and kind on its own
    together = visualize_model(model, {"conv_a": None, "conv_b": [1, 4], LOGITS: None}, settings, seed=2)
    alone = {"conv_a": visualize_filters(model, "conv_a", settings=FAST, seed=2),
             "conv_b": visualize_filters(model, "conv_b", [1, 4], FAST, seed=2),
             LOGITS: visualize_classes(model, settings=FAST, seed=2)}
    for name, result in alone.items():
        np.testing.assert_array_equal(together[name].units, result.units)
        np.testing.assert_allclose(together[name].activation, result.activation, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(together[name].images, result.images, atol=1e-3)
    np.testing.assert_allclose(together[LOGITS].probability, alone[LOGITS].probability, atol=1e-3)
    assert together["conv_a"].peak is not None and together[LOGITS].probability is not None


def test_a_large_canvas_gets_fewer_slots_per_optimisation_all_through_one_traced_loop(model, monkeypatch):
    units = [0, 1, 2, 3, 5]
    whole = visualize_filters(model, "conv_b", units, settings=FAST, seed=1)
    batches, loops, real_render = [], [], featvis.render_units

    def spy(probe, objective, size, settings, slots, units, seed, *more):
        batches.append((len(units), sum(int(variable.shape[0]) for variable in slots)))
        result = real_render(probe, objective, size, settings, slots, units, seed, *more)
        loops.append(more[-1])  # the chunk layout's compiled stages, filled by the first chunk
        return result

    monkeypatch.setattr(featvis, "batch_rows", lambda shape, values=None: 4 if shape == (12, 12, 1) else 0)
    monkeypatch.setattr(featvis, "render_units", spy)
    limited = visualize_filters(model, "conv_b", units, settings=FAST, seed=1)
    # 5 filters, at most 4 slots per optimisation: two chunks of one slot count, the last one padded
    assert batches == [(3, 3), (2, 3)]
    assert loops[0] is loops[1] and [r._optimise.experimental_get_tracing_count() for r in loops[0]] == [1]
    np.testing.assert_allclose(limited.activation, whole.activation, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(limited.images, whole.images, atol=1e-3)


def test_same_seed_same_images_other_seed_other_images(model):
    a = visualize_filters(model, "conv_a", settings=FAST, seed=7)
    b = visualize_filters(model, "conv_a", settings=FAST, seed=7)
    c = visualize_filters(model, "conv_a", settings=FAST, seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.allclose(a.images, c.images)


def test_the_reported_activation_is_the_layer_output_on_the_image(model):
    result = visualize_filters(model, "conv_a", settings=FAST, seed=0)
    maps = keras.Model(model.input, model.get_layer("conv_a").output)(result.images).numpy()
    own = maps[np.arange(len(result.units)), :, :, result.units]
    np.testing.assert_allclose(result.activation, own.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.peak, own.max(axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_objectives_compose_like_numbers():
    rng = np.random.default_rng(0)
    acts = {"a": tf.constant(rng.random((2, 4, 4, 3), dtype=np.float32)),
            LOGITS: tf.constant(rng.random((2, 5), dtype=np.float32))}
    a, b = channel("a", 1), neuron("a", [0, 2], 1, 2)
    combined = (a + 0.5 * b - layer_mean("a")).fn(acts).numpy()
    expected = (acts["a"].numpy()[..., 1].mean(axis=(1, 2)) + 0.5 * acts["a"].numpy()[[0, 1], 2, 1, [0, 2]]
                - acts["a"].numpy().mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(combined, expected, rtol=1e-5)
    np.testing.assert_allclose(class_logit([4, 0]).fn(acts).numpy(), acts[LOGITS].numpy()[[0, 1], [4, 0]])


def test_class_objective_reads_the_logit_and_leaves_the_model_alone(model):
    x = np.random.default_rng(0).random((3, 12, 12, 1), dtype=np.float32)
    logits = logit_probe(model).fn(tf.constant(x), tf.constant(PLAIN))[LOGITS].numpy()
    probabilities = model(x).numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probabilities, rtol=1e-4, atol=1e-6)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_class_images_are_classified_as_their_class():
    # A model trained to tell where a bright bar is: top, middle or bottom third.
    rng = np.random.default_rng(0)
    x = rng.random((300, 12, 12, 1), dtype=np.float32) * 0.3
    y = np.arange(300) % 3
    for i, label in enumerate(y):
        x[i, 4 * label : 4 * label + 4] += 0.7
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    result = visualize_classes(model, settings=FeatVisSettings(steps=48), seed=0)
    assert result.probability.shape == (3,)
    assert np.all(result.probability > 0.5)  # each image's own class wins


def test_a_unit_dead_on_the_random_start_still_starts(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    kernel, bias = clone.get_layer("conv_a").get_weights()
    kernel[..., 0] = np.abs(kernel[..., 0])
    bias[0] = -0.9 * kernel[..., 0].sum()  # fires only on near-white patches
    clone.get_layer("conv_a").set_weights([kernel, bias])
    grey = tf.fill([1, 12, 12, 1], 0.5)
    assert keras.Model(clone.input, clone.get_layer("conv_a").output)(grey).numpy()[..., 0].max() == 0
    redirected = visualize_filters(clone, "conv_a", [0], FeatVisSettings(steps=24, warmup_steps=0), seed=0)
    warm = visualize_filters(clone, "conv_a", [0], FeatVisSettings(steps=24, warmup_steps=8), seed=0)
    assert redirected.activation[0] > 0  # the silent map optimised its pre-activation until it fired
    assert warm.activation[0] > 0


def test_leak_shapes_the_ascent_but_never_the_proof_numbers(model):
    x = tf.constant(np.random.default_rng(0).random((2, 12, 12, 1), dtype=np.float32))
    probe = layer_probe(model, "conv_a", leak=0.25)
    plain = probe.fn(x, tf.constant(PLAIN))["conv_a"].numpy()
    np.testing.assert_allclose(plain, keras.Model(model.input, model.get_layer("conv_a").output)(x), atol=1e-6)
    leaky = probe.fn(x, tf.constant(OPTIMISE))["conv_a"].numpy()
    live = plain.max(axis=(1, 2), keepdims=True) > 0
    off = (plain == 0) & live
    assert off.any() and np.all(leaky[off] < 0)  # switched-off positions keep a quarter of their pre-activation
    np.testing.assert_allclose(leaky[plain > 0], plain[plain > 0], rtol=1e-5)


def strided_and_dilated_cnn() -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((13, 13, 2))
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="strided")(inputs)
    x = keras.layers.Conv2D(4, 3, dilation_rate=2, use_bias=False, activation="relu", name="dilated")(x)
    x = keras.layers.Conv2D(4, (2, 3), strides=(2, 1), padding="same", activation="relu", name="uneven")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))


@pytest.mark.parametrize("phase", [PLAIN, OPTIMISE, WARM_UP])
@pytest.mark.parametrize("layer", ["conv_a", "conv_b", "hidden", "strided", "dilated", "uneven"])
def test_a_probe_given_channels_keeps_each_slots_own_map_in_every_phase(model, layer, phase):
    net = model if layer in ("conv_a", "conv_b", "hidden") else strided_and_dilated_cnn()
    x = tf.constant(np.random.default_rng(1).random((3, *net.input_shape[1:]), dtype=np.float32))
    units = [2, 0, 3]
    full = layer_probe(net, layer, leak=0.25).fn(x, tf.constant(phase))[layer].numpy()
    own = layer_probe(net, layer, leak=0.25, channels=tf.constant(units)).fn(x, tf.constant(phase))[layer].numpy()
    assert own.shape == (3, *full.shape[1:-1], 1)
    np.testing.assert_allclose(own[..., 0], np.moveaxis(full, -1, 1)[np.arange(3), units], rtol=1e-5, atol=1e-5)


def test_total_variation_is_the_mean_difference_of_neighbours():
    images = np.random.default_rng(0).random((2, 5, 7, 3), dtype=np.float32)
    expected = (np.abs(np.diff(images, axis=1)).mean(axis=(1, 2, 3))
                + np.abs(np.diff(images, axis=2)).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(total_variation(2.0)(tf.constant(images)).numpy(), 2 * expected, rtol=1e-5)


def test_jitter_rolls_every_image_by_the_same_whole_pixels():
    images = np.random.default_rng(0).random((2, 6, 6, 1), dtype=np.float32)
    moved = jitter(2)(tf.constant(images), tf.constant([0.9, 0.1])).numpy()  # 2 right, 2 up
    np.testing.assert_array_equal(moved, np.roll(images, (-2, 2), axis=(1, 2)))


@pytest.mark.parametrize("param", [PixelParam(12, 10, 1), FFTParam(12, 10, 1), FFTParam(9, 8, 3)])
def test_parameterisations_invert(param):
    images = np.random.default_rng(0).uniform(0.02, 0.98, (2, param.height, param.width, param.channels))
    back = param.to_image(tf.constant(param.from_image(images.astype(np.float32)))).numpy()
    np.testing.assert_allclose(back, images, atol=1e-4)


def test_images_are_a_stretched_sigmoid_clipped_to_the_unit_range():
    x = tf.constant(np.linspace(-8, 8, 2001, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        images = to_unit_range(x)
    expected = np.clip(1.1 / (1 + np.exp(-x.numpy())) - 0.05, 0, 1)
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-6)
    slope = tape.gradient(images, x).numpy()
    inside = (expected > 0.001) & (expected < 0.999)
    assert np.all(slope[inside] > 0) and np.all(slope[(expected == 0) | (expected == 1)] == 0)


def test_the_render_leaves_graph_optimisation_switched_on(model):
    visualize_filters(model, "conv_a", [0], FeatVisSettings(steps=2))
    assert not tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)


def test_multi_scale_optimises_coarse_then_fine_and_still_batches(model):
    settings = FeatVisSettings(steps=24, scales=(0.5, 1.0))
    assert settings.stages() == [(0.5, 12), (1.0, 12)]
    start = visualize_filters(model, "conv_b", settings=FeatVisSettings(steps=1), seed=0)
    batched = visualize_filters(model, "conv_b", [0, 3, 5], settings, seed=2)
    assert batched.activation.mean() > 2 * max(start.activation[[0, 3, 5]].mean(), 1e-3)
    alone = visualize_filters(model, "conv_b", [3], settings, seed=2)
    np.testing.assert_allclose(alone.activation[0], batched.activation[1], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="scales"):
        FeatVisSettings(scales=(2.0,)).stages()


def test_section_marks_dead_filters_and_writes_its_pictures(tiny_context):
    ctx = tiny_context
    kernel, bias = ctx.model.get_layer("conv_a").get_weights()
    kernel[..., 2], bias[2] = 0, -1  # filter 2 can never fire
    ctx.model.get_layer("conv_a").set_weights([kernel, bias])
    ctx.quick = True
    section = feature_vis.build(ctx)
    filters = section.data["layers"]["conv_a"]["filters"]
    assert filters[2]["dead"] and filters[2]["dataset_peak"] == 0
    assert not filters[0]["dead"] or filters[0]["dataset_peak"] <= 0
    assert [c["class"] for c in section.data["classes"]] == [0, 1, 2]
    for figure in section.figures:
        assert (ctx.out_dir / figure.path).is_file()
    assert set(section.handoff) == {"conv_a", "conv_b", LOGITS}  # LOGITS: the classes' first-start images


def test_section_counts_filters_whose_best_input_is_uniform(tiny_context):
    ctx = tiny_context
    kernel, bias = ctx.model.get_layer("conv_a").get_weights()
    kernel[..., 1], bias[1] = np.abs(kernel[..., 1]) + 0.1, 0  # all weights positive: white wins
    ctx.model.get_layer("conv_a").set_weights([kernel, bias])
    ctx.quick = True
    section = feature_vis.build(ctx)
    figure = next(f for f in section.figures if f.title == "conv_a")
    assert figure.numbers["uniform_images"] >= 1
    assert "respond most to a uniform image" in figure.caption
    assert section.handoff["conv_a"].images[1].min() > 0.95  # filter 1's image is white


def test_diverse_groups_size_their_optimisations_by_the_layers_gram_matrices_too(monkeypatch):
    from reportgen.model import Network

    model = tiny_cnn()
    values = Network(model).activation_values((12, 12))
    asked = []
    monkeypatch.setattr(featvis, "batch_rows", lambda shape, per_image=None: asked.append(per_image) or 64)
    featvis.visualize_model(model, {"conv_a": np.array([0])}, FeatVisSettings(steps=4), 0,
                            neurons={"conv_b": np.array([1])}, diverse={"conv_b": np.array([1, 2])})
    # the filters' and the pictures' optimisations: a conv_b group also holds its 6 x 6 Gram and gradient
    assert sorted(asked) == [values, values + 2 * 6 * 6]


def test_a_swish_models_traced_graphs_are_freed_and_its_numbers_unchanged():
    """tf.nn.silu's gradient is a tf.custom_gradient, which keeps every graph it is traced in alive (an
    EfficientNetB0 build grew by 0.2 GB per optimisation): the Network computes swish without it."""
    import gc
    import weakref

    from reportgen.methods.featvis.probes import PLAIN, layer_probe
    from reportgen.model import Network

    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, activation="swish", name="conv_a")(inputs)
    x = keras.layers.Conv2D(5, 3, name="conv_b")(x)
    x = keras.layers.Activation("swish", name="act_b")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).random((6, 12, 12, 1), np.float32)
    network = Network(model)
    np.testing.assert_allclose(network.probabilities(images), model(images).numpy(), rtol=1e-5, atol=1e-6)
    probe = layer_probe(network, "conv_b")
    maps = probe.fn(tf.constant(images), tf.constant(PLAIN))["conv_b"].numpy()
    np.testing.assert_allclose(maps, keras.Model(inputs, x)(images).numpy(), rtol=1e-5, atol=1e-6)

    def ascent(batch: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(batch)
            total = tf.reduce_sum(probe.fn(batch, tf.constant(PLAIN))["conv_b"])
        return tape.gradient(total, batch)

    step = tf.function(ascent)
    graph = weakref.ref(step.get_concrete_function(tf.TensorSpec((None, 12, 12, 1), tf.float32)).graph)
    assert np.abs(step(tf.constant(images)).numpy()).sum() > 0
    del step
    gc.collect()
    assert graph() is None


def test_a_wider_start_spread_scales_each_slots_random_start(model):
    settings = FeatVisSettings(steps=1, learning_rate=1e-12)  # the images are (almost exactly) the starts
    part = featvis.unit_part(model, "conv_b", 4, settings)
    images = {}
    for spread in (1.0, 5.0):
        images[spread] = featvis.render_units(part.probe, part.objective, (12, 12), settings, part.slots,
                                              np.arange(4), 0, spread=np.array([1.0, 1.0, spread, spread])).images
    np.testing.assert_allclose(images[5.0][:2], images[1.0][:2])  # the slots left at 1 keep their starts
    logits = [from_unit_range(images[spread][2:]).numpy() for spread in (1.0, 5.0)]
    np.testing.assert_allclose(logits[1], 5 * logits[0], rtol=1e-3, atol=1e-3)
