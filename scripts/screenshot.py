"""Screenshot a built report page for the README.

    python generate.py --model mnist-3conv --out /tmp/shot-site     # a real build (or --quick)
    python scripts/screenshot.py --site /tmp/shot-site               # -> docs/images/report.png

Opens `<site>/<model>/index.html` in headless Chromium (Playwright driving Debian's `chromium`, as
tests/test_browser.py does: nothing is downloaded), scrolls to a section as a link to it would (default:
the activation grids; `--section ''` for the page's first screen), takes the screen a visitor sees there,
sticky navigation bar included, and writes it downsized with Pillow as an optimised 256-colour PNG.
`--at SECTION=FILE` adds more screens (e.g. `--at feature-vis=/tmp/featvis.png`, `--at top=/tmp/top.png`).
Needs the test extra (`pip install -e ".[test]"`) and Debian's chromium (`apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
EAGER_IMAGES_JS = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = "eager"; });
    await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
        img.addEventListener("load", done); img.addEventListener("error", done); })));
}"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        sys.exit("Error: chromium is not installed (apt-get install -y chromium)")
    return path


def shrink(png: bytes, width: int, out: Path, colors: int) -> None:
    """Downsize to `width` px (Lanczos), quantise to `colors` (0: keep RGB) and write an optimised PNG."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    if colors:
        image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"{out}: {image.width}x{image.height}, {out.stat().st_size / 1024:.0f} KB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("site"), help="built site folder (default: site/)")
    parser.add_argument("--model", default="mnist-3conv", help="model folder in the site (default: mnist-3conv)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/report.png",
                        help="where the screen goes (default: docs/images/report.png, the README's image)")
    parser.add_argument("--section", default="activations", metavar="ID",
                        help="the screen at this section's heading (default: activations, the activation grids); "
                             "'' for the page's first screen")
    parser.add_argument("--at", action="append", default=[], metavar="SECTION=FILE",
                        help="also the screen at a section's heading, e.g. feature-vis=docs/images/feature-vis.png "
                             "(repeatable; top: the first screen; ids: summary, training, confusion, activations, "
                             "class-maps, kernels, feature-vis, units, deepdream, attribution)")
    parser.add_argument("--viewport", default="1200x820", help="browser window, WIDTHxHEIGHT CSS px")
    parser.add_argument("--width", type=int, default=1000, help="width of the written images in px")
    parser.add_argument("--colors", type=int, default=256, help="palette size (0: full colour)")
    parser.add_argument("--dark", action="store_true", help="the dark colour scheme")
    args = parser.parse_args(argv)

    page = args.site / args.model / "index.html"
    if not page.is_file():
        sys.exit(f"Error: {page} not found: build it first (python generate.py --model {args.model} "
                 f"--out {args.site})")
    shots = [(args.section, args.out)]
    for item in args.at:
        section, sep, file = item.partition("=")
        if not sep or not section or not file:
            sys.exit(f"Error: --at {item!r} is not SECTION=FILE")
        shots.append(("" if section == "top" else section, Path(file)))
    from playwright.sync_api import sync_playwright

    view_w, view_h = (int(v) for v in args.viewport.lower().split("x"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": view_w, "height": view_h}, device_scale_factor=1,
                                          color_scheme="dark" if args.dark else "light")
            tab = context.new_page()
            tab.goto(page.resolve().as_uri(), wait_until="load")
            # The site lazy-loads its images: make them eager and wait until every one has decoded.
            tab.evaluate(EAGER_IMAGES_JS)
            for section, out in shots:
                if section and tab.locator(f"section#{section}").count() == 0:
                    sys.exit(f"Error: {page} has no section {section!r}")
                # At a section: its heading just below the sticky bar (the CSS's scroll-margin), as a link goes.
                tab.evaluate("id => id ? document.getElementById(id).scrollIntoView() : window.scrollTo(0, 0)",
                             section)
                tab.wait_for_timeout(100)
                shrink(tab.screenshot(), args.width, out, args.colors)
        finally:
            browser.close()

if __name__ == "__main__":
    main()
