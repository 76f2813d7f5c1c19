"""The embeddings pages in real Chromium against a real server: a run's patches and a dataset's samples embedded
by a real model (efficientnet-lite0, offline), drawn on the canvas (read back pixel by pixel), lassoed with the
mouse, promoted and tagged; and the empty state with the command that computes them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tests.browser_helpers import chromium, drawn_pixels, live_server, screenshot, wait_until
from tests.runs_helpers import blob_dataset, request
from verilabel import accounts
from verilabel.datasets import service as ds
from verilabel.datasets.embeddings import compute_embeddings
from verilabel.datasets.views import parse_view
from verilabel.review import service as review
from verilabel.runs import service as runs
from verilabel.store import Store
from verilabel.store.schema import EmbeddingPointRow, EmbeddingSetRow

pytestmark = pytest.mark.slow
MODEL = "efficientnet-lite0-imagenet"


@pytest.fixture
def labelled(store: Store, tmp_path: Path) -> Store:
    """Dataset `d`: 30 blob images, an approved field `truth`, and runs `blobs` and `spare` in review."""
    blob_dataset(store, tmp_path / "imgs", 30)
    truth = runs.wait_run(store, runs.create_run(store, request("truth")).id, timeout=120)
    review.promote(store, truth.id)
    review.approve(store, truth.id)
    for name in ("blobs", "spare"):
        assert runs.wait_run(store, runs.create_run(store, request(name)).id, timeout=120).status == "in_review"
    return store


@pytest.fixture
def embedded(labelled: Store) -> Store:
    """`blobs`'s patches embedded under `patches`, and the samples under `samples`; `spare` has none."""
    patches = compute_embeddings(labelled, "d", MODEL, key="patches", patches="blobs", device="cpu")
    samples = compute_embeddings(labelled, "d", MODEL, key="samples", device="cpu")
    assert patches.projected > 30 and samples.projected == 30, (patches, samples)
    return labelled


def served(store: Store, home: Path):
    editor = accounts.add_user(store, "erin", "editor")[1]
    viewer = accounts.add_user(store, "vic", "viewer")[1]
    return editor, viewer, live_server(store, home)


@pytest.fixture
def app(embedded: Store, home: Path):
    editor, viewer, server = served(embedded, home)
    with server as (url, _), chromium() as browser:
        yield url, {"editor": editor, "viewer": viewer}, browser


@pytest.fixture
def bare_app(labelled: Store, home: Path):
    editor, viewer, server = served(labelled, home)
    with server as (url, _), chromium() as browser:
        yield url, {"editor": editor, "viewer": viewer}, browser


def open_page(browser, url: str, token: str, path: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(f"{url}/?token={token}")
    page.goto(f"{url}/{path}")
    page.errors = errors
    return page


def api_get(url: str, token: str, path: str, **params: Any) -> Any:
    response = httpx.get(f"{url}/api/v1{path}", params=params, headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    return response.json()


def project_all(page, count: int) -> list[tuple[float, float, bool]]:
    return page.evaluate(
        "count => { const plot = document.querySelector('.scatter canvas').plot;"
        " return Array.from({length: count}, (_, i) => plot.project(i)); }",
        count,
    )


def next_frame(page) -> None:
    """Wait until the plot has drawn what was asked (it draws at the next animation frame)."""
    page.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def canvas_origin(page) -> tuple[float, float]:
    box = page.evaluate(
        "() => { const b = document.querySelector('.scatter canvas').getBoundingClientRect(); return [b.left, b.top]; }"
    )
    return box[0], box[1]


def inside(polygon: list[tuple[float, float]], x: float, y: float) -> bool:
    """Even-odd ray casting, as the app's lasso does."""
    within = False
    j = len(polygon) - 1
    for i, (xi, yi) in enumerate(polygon):
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            within = not within
        j = i
    return within


def split_x(places: list[tuple[float, float, bool]]) -> float:
    """An x between the points' 30th and 70th percentiles in the widest gap: no point sits near a lasso edge there."""
    xs = sorted(x for x, _, shown in places if shown)
    low, high = int(len(xs) * 0.3), int(len(xs) * 0.7)
    gap, at = max((xs[i + 1] - xs[i], i) for i in range(low, high))
    return xs[at] + gap / 2


def lasso(page, polygon: list[tuple[float, float]], *, add: bool = False) -> None:
    """Shift-drag (ctrl + shift: add) along the polygon, in CSS pixels of the canvas."""
    left, top = canvas_origin(page)
    modifiers = ["Control", "Shift"] if add else ["Shift"]
    for key in modifiers:
        page.keyboard.down(key)
    page.mouse.move(left + polygon[0][0], top + polygon[0][1])
    page.mouse.down()
    for x, y in [*polygon[1:], polygon[0]]:
        page.mouse.move(left + x, top + y, steps=8)
    page.mouse.up()
    for key in reversed(modifiers):
        page.keyboard.up(key)


def box_polygon(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """A hand-drawn-ish lasso: a box with a dent in its top edge."""
    return [(x0, y0), ((x0 + x1) / 2, y0 + 6), (x1, y0), (x1, y1), (x0, y1)]


def selected_count(page) -> int:
    text = page.inner_text("#selection-count")
    found = re.match(r"(\d+) (labels?|samples?) selected", text)
    return int(found.group(1)) if found else 0


def test_patches_are_drawn_lassoed_and_promoted(app):
    url, tokens, browser = app
    data = api_get(url, tokens["editor"], "/datasets/d/embeddings/patches")
    total = len(data["x"])
    assert data["kind"] == "patches" and total == len(data["label_ids"]) and not any(data["promoted"])
    page = open_page(browser, url, tokens["editor"], "#/runs/blobs")
    page.click("a.button >> text=Embeddings")  # the run page links to its embeddings
    page.wait_for_selector(".scatter canvas")
    wait_until(page, "document.querySelectorAll('.legend-item').length === 3")
    next_frame(page)
    assert drawn_pixels(page, ".scatter canvas")[0] > total * 20

    # every point is painted at its place in its class's colour (the legend's swatch)
    places = project_all(page, total)
    painted = page.evaluate(
        """places => {
            const canvas = document.querySelector('.scatter canvas');
            const g = canvas.getContext('2d');
            const ratio = canvas.width / canvas.clientWidth;
            const at = ([x, y]) => g.getImageData(Math.floor(x * ratio), Math.floor(y * ratio), 1, 1).data;
            return places.map(place => Array.from(at(place)));
        }""",
        places,
    )
    swatches = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.legend-item')].map(item => [item.dataset.class,
            getComputedStyle(item.querySelector('.swatch')).backgroundColor.match(/\\d+/g).slice(0, 3).map(Number)]))"""
    )
    assert set(swatches) == set(data["class_names"]) == {"red", "green", "blue"}
    assert all(pixel[3] > 150 for pixel in painted)
    own = sum(
        max(abs(a - b) for a, b in zip(pixel[:3], swatches[data["class_names"][c]], strict=True)) < 40
        for pixel, c in zip(painted, data["classes"], strict=True)
    )
    assert own >= 0.8 * total, (own, total)

    # a lasso around the left part of the map selects exactly the points inside it
    xs = [x for x, _, _ in places]
    ys = [y for _, y, _ in places]
    split = split_x(places)
    first = box_polygon(min(xs) - 15, min(ys) - 15, split, max(ys) + 15)
    expected = {i for i, (x, y, _) in enumerate(places) if inside(first, x, y)}
    assert 0 < len(expected) < total
    lasso(page, first)
    wait_until(page, f"document.querySelector('#selection-count').innerText.startsWith('{len(expected)} label')")
    assert page.locator("#previews .preview").count() == min(60, len(expected))
    shown = {page.get_attribute(f"#previews .preview >> nth={i}", "data-label") for i in range(min(60, len(expected)))}
    assert shown <= {data["label_ids"][i] for i in expected}

    # ctrl + shift adds a second lasso: the right half's top
    right = sorted((i for i, (x, _, _) in enumerate(places) if x > split), key=lambda i: places[i][1])
    cut = next(
        (places[a][1] + places[b][1]) / 2
        for a, b in zip(right[len(right) // 3 :], right[len(right) // 3 + 1 :], strict=False)
        if places[b][1] - places[a][1] > 1
    )
    second = box_polygon(split + 1, min(ys) - 15, max(xs) + 15, cut)
    added = {i for i, (x, y, _) in enumerate(places) if inside(second, x, y)}
    assert added and not added & expected
    lasso(page, second, add=True)
    expected |= added
    wait_until(page, f"document.querySelector('#selection-count').innerText.startsWith('{len(expected)} label')")
    assert len(expected) < total

    page.click(f".embed-actions >> text=Promote {len(expected)}")
    page.click(f".toast >> text=promoted {len(expected)} label")  # (a click dismisses it)
    fresh = api_get(url, tokens["editor"], "/datasets/d/embeddings/patches")
    promoted = {label for label, up in zip(fresh["label_ids"], fresh["promoted"], strict=True) if up}
    assert promoted == {data["label_ids"][i] for i in expected}
    assert runs.get_run(Store.open(), "blobs").promoted == len(expected)
    wait_until(page, "document.querySelector('#selection-count').innerText.startsWith('Nothing selected')")
    assert "a promoted label is ringed in white" in page.inner_text(".embed-about")

    # the minimum confidence hides points (and the legend says how many of each class remain)
    page.fill(".pick input[type=range]", "0.5")
    page.dispatch_event(".pick input[type=range]", "input")
    wait_until(page, "document.querySelector('.legend').innerText.includes(' of ')")
    remaining = sum(1 for c in data["confidence"] if c is None or c >= 0.5)
    assert page.evaluate("document.querySelector('.scatter canvas').plot.shown()") == remaining < total
    page.fill(".pick input[type=range]", "0")
    page.dispatch_event(".pick input[type=range]", "input")
    page.evaluate("document.activeElement.blur()")

    # for the picture: a fresh selection, and the preview of a hovered point
    lasso(page, first)
    wait_until(page, "[...document.querySelectorAll('#previews img')].every(i => i.complete && i.naturalWidth)")
    left, top = canvas_origin(page)
    target = next(i for i in sorted(range(total), key=lambda i: -places[i][0]) if i not in expected)
    page.mouse.move(left + places[target][0], top + places[target][1])
    page.wait_for_selector(".scatter-tip:not([hidden])")
    wait_until(page, "document.querySelector('.scatter-tip img').complete")
    tip = page.inner_text(".scatter-tip")
    assert data["class_names"][data["classes"][target]] in tip
    assert f"{data['confidence'][target]:.2f}" in tip
    screenshot(page, "embeddings-patches")
    page.keyboard.press("c")
    wait_until(page, "document.querySelector('#selection-count').innerText.startsWith('Nothing selected')")
    assert not page.errors


def test_samples_coloured_by_a_field_lassoed_and_tagged(app):
    url, tokens, browser = app
    data = api_get(url, tokens["editor"], "/datasets/d/embeddings/samples", field="truth")
    total = len(data["x"])
    page = open_page(browser, url, tokens["editor"], "#/datasets/d")
    page.click("a.button >> text=Embeddings")  # the dataset page links to its embeddings
    page.wait_for_selector(".scatter canvas")
    assert page.input_value("select[aria-label='colour by field']") == "truth"
    wait_until(page, "document.querySelectorAll('.legend-item').length > 0")
    assert {
        page.get_attribute(f".legend-item >> nth={i}", "data-class")
        for i in range(page.locator(".legend-item").count())
    } == {data["class_names"][c] if c >= 0 else "no class" for c in data["classes"]}
    next_frame(page)
    assert drawn_pixels(page, ".scatter canvas")[0] > total * 20
    places = project_all(page, total)
    xs = [x for x, _, _ in places]
    ys = [y for _, y, _ in places]
    split = split_x(places)
    polygon = box_polygon(min(xs) - 15, min(ys) - 15, split, max(ys) + 15)
    expected = {i for i, (x, y, _) in enumerate(places) if inside(polygon, x, y)}
    assert 0 < len(expected) < total
    lasso(page, polygon)
    wait_until(page, f"document.querySelector('#selection-count').innerText.startsWith('{len(expected)} sample')")
    wait_until(page, "[...document.querySelectorAll('#previews img')].every(i => i.complete && i.naturalWidth)")
    screenshot(page, "embeddings-samples")

    page.click(".embed-actions >> text=Tag samples…")
    page.fill(".dialog input", "look-alike")
    page.click(".dialog button.primary")
    page.wait_for_selector(f".toast >> text=tagged {len(expected)} sample")
    tagged = {sample.id for sample in ds.samples(Store.open(), "d", parse_view("tags=look-alike"))}
    assert tagged == {data["sample_ids"][i] for i in expected}

    # colour by nothing: one grey class
    page.select_option("select[aria-label='colour by field']", "")
    wait_until(page, "document.querySelectorAll('.legend-item').length === 1")
    assert page.inner_text(".legend-item").startswith("no class")
    assert selected_count(page) == len(expected)  # the selection stays when the colours change
    assert not page.errors


def test_a_viewer_zooms_pans_and_hides_classes_without_actions(app):
    url, tokens, browser = app
    data = api_get(url, tokens["viewer"], "/datasets/d/embeddings/patches")
    total = len(data["x"])
    page = open_page(browser, url, tokens["viewer"], "#/runs/blobs/embeddings")
    page.wait_for_selector(".scatter canvas")
    wait_until(page, "document.querySelectorAll('.legend-item').length === 3")
    assert page.locator(".embed-actions >> text=Promote").count() == 0
    assert page.locator(".embed-actions >> text=Clear").count() == 1

    # the wheel zooms about the pointer, a drag pans, f fits again
    fitted = project_all(page, total)
    left, top = canvas_origin(page)
    page.mouse.move(left + fitted[0][0], top + fitted[0][1])
    page.mouse.wheel(0, -400)
    wait_until(page, f"document.querySelector('.scatter canvas').plot.project(1)[0] !== {fitted[1][0]}")
    zoomed = project_all(page, total)
    assert abs(zoomed[0][0] - fitted[0][0]) < 1 and abs(zoomed[0][1] - fitted[0][1]) < 1  # under the pointer
    spread = max(x for x, _, _ in zoomed) - min(x for x, _, _ in zoomed)
    assert spread > 1.5 * (max(x for x, _, _ in fitted) - min(x for x, _, _ in fitted))
    page.mouse.move(left + 5, top + 5)
    page.mouse.down()
    page.mouse.move(left + 65, top + 45, steps=5)
    page.mouse.up()
    panned = project_all(page, total)
    assert abs(panned[1][0] - zoomed[1][0] - 60) < 0.5 and abs(panned[1][1] - zoomed[1][1] - 40) < 0.5
    page.keyboard.press("f")
    wait_until(page, f"Math.abs(document.querySelector('.scatter canvas').plot.project(1)[0] - {fitted[1][0]}) < 0.01")
    next_frame(page)

    # a class switched off in the legend is drawn no more
    reds = sum(1 for c in data["classes"] if data["class_names"][c] == "red")
    before = drawn_pixels(page, ".scatter canvas")[0]
    page.click(".legend-item[data-class=red]")
    wait_until(page, "document.querySelector('.legend-item[data-class=red]').classList.contains('off')")
    assert page.evaluate("document.querySelector('.scatter canvas').plot.shown()") == total - reds
    next_frame(page)
    assert drawn_pixels(page, ".scatter canvas")[0] < before
    page.keyboard.press("?")
    page.wait_for_selector(".dialog >> text=lasso: select the points inside")
    page.keyboard.press("Escape")

    # a map not projected yet says so and is followed; the error that stops it shows in its place
    with Store.open().write() as session:
        session.execute(update(EmbeddingPointRow).values(x=None, y=None))
        session.execute(update(EmbeddingSetRow).values(projected_at=None))
    page.goto(f"{url}/#/datasets/d/embeddings")
    page.wait_for_selector(".embed-empty >> text=samples is being computed")
    assert page.inner_text("#embed-progress") == "30 points embedded so far"
    assert page.inner_text(".embed-empty pre") == f"verilabel dataset embed d --key samples --model {MODEL}"
    assert "(not on the map yet)" in page.inner_text("select[aria-label=embedding]")
    with Store.open().write() as session:
        session.execute(update(EmbeddingSetRow).values(error="out of memory"))
    page.wait_for_selector(".embed-empty >> text=samples stopped")
    assert page.inner_text(".embed-empty .error") == "out of memory"
    assert page.locator("text=Compute again").count() == 0  # a viewer computes nothing
    assert not page.errors


def test_no_embeddings_yet_says_how_to_compute_them_and_computes_them(bare_app):
    """The empty state gives the CLI command; an editor can compute the map from it (a background process the page
    follows until the map is drawn); a model that does not embed is refused by its field."""
    url, tokens, browser = bare_app
    viewer = open_page(browser, url, tokens["viewer"], "#/datasets/d/embeddings")
    viewer.wait_for_selector(".embed-empty >> text=verilabel dataset embed d --model clip-vit-base-patch32")
    assert viewer.locator(".embed-compute").count() == 0  # a viewer computes nothing
    screenshot(viewer, "embeddings-empty")

    page = open_page(browser, url, tokens["editor"], "#/runs/spare")
    page.click("a.button >> text=Embeddings")
    page.wait_for_selector(".embed-empty")
    assert "No embeddings of spare's patches yet" in page.inner_text(".embed-empty h2")
    assert page.inner_text(".embed-empty pre") == (
        "verilabel dataset embed d --patches spare --model clip-vit-base-patch32"
    )
    assert "efficientnet-lite0-imagenet" in page.inner_text(".embed-empty")
    assert page.locator(".scatter canvas").count() == 0

    page.fill("#embed-model", "yolo26n-cls-imagenet")
    page.click(".embed-compute button.primary")
    page.wait_for_selector("#embed-model-error >> text=does not embed images")
    screenshot(page, "embeddings-compute")
    page.fill("#embed-model", MODEL)
    page.click(".embed-compute button.primary")
    page.wait_for_selector(".embed-empty >> text=spare-patches is being computed")
    page.wait_for_selector(".scatter canvas", timeout=180_000)
    wait_until(page, "document.querySelectorAll('.legend-item').length === 3")
    next_frame(page)
    assert drawn_pixels(page, ".scatter canvas")[0] > 0
    listed = api_get(url, tokens["viewer"], "/datasets/d/embeddings", run="spare")
    assert [(e["key"], e["model"], e["ready"], e["error"]) for e in listed] == [("spare-patches", MODEL, True, None)]

    # stopped by an error: computing it again from the page keeps the points and draws the map
    with Store.open().write() as session:
        session.execute(update(EmbeddingSetRow).values(projected_at=None, error="the disk is full"))
    page.reload()
    page.wait_for_selector(".embed-empty >> text=spare-patches stopped")
    page.click("text=Compute again")
    page.wait_for_selector(".scatter canvas", timeout=180_000)
    assert api_get(url, tokens["viewer"], "/datasets/d/embeddings")[0]["points"] == listed[0]["points"]
    assert all("422" in error for error in page.errors) and not viewer.errors  # (the refused model's answer)


@pytest.fixture
def empty_app(store: Store, home: Path):
    _, viewer, server = served(store, home)
    with server as (url, _), chromium() as browser:
        yield url, viewer, browser


DENSE_PLOT = """async count => {
    const base = document.querySelector('link[rel=stylesheet]').href.replace(/\\/app\\.css$/, '');
    const { scatter } = await import(`${base}/embeddings.js`);
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const names = Array.from({length: 20}, (_, c) => `class-${c}`);
    const data = { x: [], y: [], classes: [], class_names: names, confidence: [], promoted: [] };
    for (let i = 0; i < count; i++) {
        const c = i % 20, angle = random() * 2 * Math.PI, radius = Math.sqrt(random());
        data.x.push(Math.cos(c / 3) * 3 + radius * Math.cos(angle));
        data.y.push(Math.sin(c / 3) * 3 + radius * Math.sin(angle));
        data.classes.push(c);
        data.confidence.push(random());
        data.promoted.push(i % 3 === 0);
    }
    const plot = scatter(data, {});
    const stage = document.createElement('div');
    stage.className = 'scatter-stage';
    stage.append(plot.element);
    document.getElementById('page').replaceChildren(stage);
    const frame = () => new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)));
    await frame();
    const start = performance.now();
    plot.fit();
    await frame();
    return performance.now() - start;
}"""


def test_two_hundred_thousand_points_draw_fast_and_lasso_exactly(empty_app):
    """Past 10k points the plot writes squares straight into the canvas's pixels: 200k points draw in one frame,
    each where it belongs, and a lasso selects exactly the points inside it."""
    url, viewer, browser = empty_app
    page = open_page(browser, url, viewer, "#/")
    page.wait_for_selector("main#page")
    count = 200_000
    took = page.evaluate(DENSE_PLOT, count)
    assert took < 1500, f"a frame of {count} points took {took:.0f} ms"
    places = project_all(page, count)
    painted = page.evaluate(
        """places => {
            const canvas = document.querySelector('.scatter canvas');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            const ratio = canvas.width / canvas.clientWidth;
            const alpha = ([x, y]) => data[(Math.floor(y * ratio) * canvas.width + Math.floor(x * ratio)) * 4 + 3];
            return places.filter(place => alpha(place) > 0).length;
        }""",
        places[::100],
    )
    assert painted == len(places[::100])
    xs = [x for x, _, _ in places]
    ys = [y for _, y, _ in places]
    middle_x, middle_y = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    polygon = [
        (min(xs) - 10, min(ys) - 10),
        (middle_x, min(ys) + 40),
        (middle_x + 30, middle_y),
        (min(xs) + 20, max(ys)),
    ]
    expected = sum(1 for x, y, _ in places if inside(polygon, x, y))
    assert 1000 < expected < count // 2
    lasso(page, polygon)
    selected = page.evaluate("document.querySelector('.scatter canvas').plot.selection().length")
    assert abs(selected - expected) <= expected // 1000  # points within a rounding of the edge may differ
    assert not page.errors
