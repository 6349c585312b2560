"""The deletion test for every method at once, against zeroing the pixels by hand, and the ranking rule."""

import keras
import numpy as np
import pytest
from conftest import tiny_cnn

from reportgen.methods.attribution import Attributor
from reportgen.methods.faithfulness import (
    SIGNIFICANCE,
    Deletion,
    deletion_pixels,
    deletion_test,
    most_faithful,
    summarize,
)


def direct_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Pre-softmax outputs by hand: the softmax model's last Dense layer without its activation."""
    last = model.layers[-1]
    hidden = keras.Model(model.input, last.input)(x).numpy()
    kernel, bias = last.get_weights()
    return hidden @ kernel + bias


def test_deletion_drops_match_zeroing_the_pixels_by_hand():
    model = tiny_cnn()
    rng = np.random.default_rng(0)
    x = rng.random((5, 12, 12, 1), dtype=np.float32)
    classes = np.array([0, 1, 2, 0, 1])
    maps = {"a": rng.random((5, 12, 12)), "b": np.round(rng.random((5, 12, 12)), 1)}  # b has ties
    deletion = deletion_test(Attributor(model).logits, x, classes, maps, fraction=0.25, trials=3, seed=4)
    top, random_sets = deletion_pixels(maps, 0.25, 3, 4)
    count = 36  # a quarter of 144 pixels

    def score_and_p(images, rows):
        z = direct_logits(model, images)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return z[np.arange(len(rows)), rows], p[np.arange(len(rows)), rows]

    score, p = score_and_p(x, classes)
    np.testing.assert_allclose(deletion.score, score, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(deletion.probability, p, rtol=1e-4, atol=1e-6)
    for name, heat in maps.items():
        assert top[name].shape == (5, count)
        # The chosen pixels are the highest-valued ones (ties may fall either way).
        flat = heat.reshape(5, -1)
        kth = np.sort(flat, axis=1)[:, -count]
        assert np.all(np.take_along_axis(flat, top[name], axis=1) >= kth[:, None])
        zeroed = x.reshape(5, -1).copy()
        np.put_along_axis(zeroed, top[name], 0.0, axis=1)
        s, q = score_and_p(zeroed.reshape(x.shape), classes)
        np.testing.assert_allclose(deletion.score_drop_top[name], score - s, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(deletion.probability_drop_top[name], p - q, rtol=1e-4, atol=1e-5)
    drops, p_drops = np.zeros(5), np.zeros(5)
    for t in range(3):
        zeroed = x.reshape(5, -1).copy()
        np.put_along_axis(zeroed, random_sets[:, t], 0.0, axis=1)
        s, q = score_and_p(zeroed.reshape(x.shape), classes)
        drops += (score - s) / 3
        p_drops += (p - q) / 3
    np.testing.assert_allclose(deletion.score_drop_random, drops, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(deletion.probability_drop_random, p_drops, rtol=1e-4, atol=1e-5)
    assert len({tuple(r) for r in random_sets.reshape(15, -1)}) == 15  # every random set is its own


def test_ties_are_broken_at_random_not_in_raster_order():
    flat = {"flat": np.zeros((1, 10, 10))}
    top, _ = deletion_pixels(flat, 0.2, 1, seed=0)
    assert sorted(top["flat"][0]) != list(range(20))


def test_deleting_the_pixels_that_matter_hurts_more_than_random():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))
    kernel = np.zeros((36, 2), np.float32)
    kernel[:7, 0] = 3.0  # class 0 reads only the first 7 pixels (20% of 36)
    model.get_layer("out").set_weights([kernel, np.zeros(2)])
    x = np.full((2, 6, 6, 1), 0.5, np.float32)
    right = np.zeros((2, 6, 6))
    right.reshape(2, -1)[:, :7] = 1.0
    deletion = deletion_test(Attributor(model).logits, x, np.array([0, 0]), {"right": right, "wrong": -right})
    np.testing.assert_allclose(deletion.probability, 1 / (1 + np.exp(-10.5)), rtol=1e-5)
    np.testing.assert_allclose(deletion.score_drop_top["right"], 10.5, rtol=1e-5)
    np.testing.assert_allclose(deletion.score_drop_top["wrong"], 0.0, atol=1e-6)
    assert np.all(deletion.score_drop_random < 10.5) and np.all(deletion.score_drop_random > 0)
    assert np.all(deletion.probability_drop_top["right"] > deletion.probability_drop_random)
    assert most_faithful(deletion, ["right", "wrong"]) == ["right"]


def made_up(drops: dict[str, list[float]], random: list[float]) -> Deletion:
    """A deletion result with the given logit drops (probabilities unused by the ranking)."""
    zeros = np.zeros(len(random))
    return Deletion(score=zeros, probability=zeros,
                    score_drop_top={m: np.array(d, float) for m, d in drops.items()},
                    probability_drop_top={m: zeros for m in drops},
                    score_drop_random=np.array(random, float), probability_drop_random=zeros)


def test_summary_numbers_match_a_direct_computation():
    drops = {"a": [5.0, 3.0, 4.0, 6.0], "b": [1.0, 2.5, 0.5, 2.0]}
    random = [1.0, 2.0, 1.5, 1.0]
    summary = summarize(made_up(drops, random), ["a", "b"])
    for name, values in drops.items():
        margin = np.array(values) - random
        se = margin.std(ddof=1) / 2
        s = summary[name]
        assert s.logit_drop_top == pytest.approx(np.mean(values))
        assert s.logit_drop_random == pytest.approx(np.mean(random))
        assert s.top_beats_random == pytest.approx(np.mean(margin > 0))
        assert (s.margin, s.margin_se) == (pytest.approx(margin.mean()), pytest.approx(se))
        assert s.beats_random == (margin.mean() > SIGNIFICANCE * se)
    assert summary["a"].beats_random and not summary["b"].beats_random
    rows = summarize(made_up(drops, random), ["a"], rows=slice(0, 2))
    assert rows["a"].logit_drop_top == pytest.approx(4.0)


def test_ranking_names_a_winner_a_tie_or_no_winner():
    random = [1.0, 1.2, 0.8, 1.0, 1.1, 0.9]
    clear = {"low": [2.0, 2.2, 1.9, 2.1, 2.0, 2.2], "high": [6.0, 6.3, 5.8, 6.1, 6.2, 5.9]}
    assert most_faithful(made_up(clear, random), ["low", "high"]) == ["high"]
    tied = {"x": [5.0, 7.0, 4.0, 6.0, 5.5, 6.5], "y": [5.5, 6.0, 4.5, 6.5, 5.0, 6.0]}
    assert most_faithful(made_up(tied, random), ["x", "y"]) in (["x", "y"], ["y", "x"])
    useless = {"x": [1.0, 1.2, 0.8, 1.0, 1.1, 0.9], "y": [0.5, 1.5, 0.9, 0.7, 1.6, 1.0]}
    assert most_faithful(made_up(useless, random), ["x", "y"]) == []
