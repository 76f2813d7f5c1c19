"""The app in real Chromium against a real server: sign-in, the grid with its labels drawn, the review panel
(slider, class table, promote, undo, approve), the keyboard, the patches view and a run started from the form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser_helpers import chromium, drawn_pixels, live_server, screenshot, wait_until
from tests.runs_helpers import BLOBS, blob_dataset, request
from verilabel import accounts
from verilabel.review import service as review
from verilabel.runs import service as runs
from verilabel.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def labelled(store: Store, tmp_path: Path) -> Store:
    """Dataset `d`: 12 blob images, an approved field `truth`, and a run `blobs` in review."""
    blob_dataset(store, tmp_path / "imgs", 12)
    truth = runs.wait_run(store, runs.create_run(store, request("truth")).id, timeout=120)
    review.promote(store, truth.id)
    review.approve(store, truth.id)
    assert runs.wait_run(store, runs.create_run(store, request("blobs")).id, timeout=120).status == "in_review"
    segmenter = BLOBS.replace("detector", "segmenter")
    masks = request("masks", task="segmentation", model=segmenter, mask_dir=str(tmp_path / "m"))
    assert runs.wait_run(store, runs.create_run(store, masks).id, timeout=120).status == "in_review"
    return store


@pytest.fixture
def app(labelled: Store, home: Path):
    editor = accounts.add_user(labelled, "erin", "editor")[1]
    viewer = accounts.add_user(labelled, "vic", "viewer")[1]
    with live_server(labelled, home) as (url, settings), chromium() as browser:
        yield url, {"editor": editor, "viewer": viewer, "launch": settings.launch_token}, browser


def open_page(browser, url: str, token: str, path: str = "/"):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(f"{url}/?token={token}")
    assert page.url == f"{url}/"  # the token left the address bar
    if path != "/":
        page.goto(f"{url}/{path}")
    page.errors = errors
    return page


def test_sign_in_then_the_grid_draws_each_samples_labels(app):
    url, tokens, browser = app
    page = browser.new_page()
    page.goto(url)
    page.fill("#token", "vl_not-a-token")
    page.click("text=Sign in")
    page.wait_for_selector("text=unknown or revoked token")
    page.fill("#token", tokens["viewer"])
    page.click("text=Sign in")
    page.wait_for_selector(".card >> text=d")
    screenshot(page, "datasets")
    page.click(".card >> text=d")
    page.wait_for_selector(".tile .labelled.loaded")
    wait_until(page, "document.querySelectorAll('.tile .labelled.loaded').length >= 12")
    shot = screenshot(page, "dataset-grid")
    assert shot.stat().st_size > 10_000
    drawn = drawn_pixels(page, ".tile canvas")
    assert len(drawn) == 12 and sum(1 for n in drawn if n > 50) >= 10  # boxes and captions are really drawn
    assert page.locator(".run-row").count() == 3
    assert page.locator("text=New run").count() == 0  # a viewer cannot start runs
    page.click(".tile >> nth=0")
    page.wait_for_selector(".viewer .labelled.loaded")
    assert max(drawn_pixels(page, ".viewer canvas")) > 100
    page.keyboard.press("Escape")
    assert page.locator(".viewer").count() == 0


def test_review_slider_class_table_promote_undo_approve(app):
    url, tokens, browser = app
    page = open_page(browser, url, tokens["editor"], "#/runs/blobs")
    page.wait_for_selector("table.classes tbody tr")
    page.wait_for_selector(".tile .labelled.loaded")
    before = page.inner_text("table.classes tbody")
    page.fill(".slider input.low", "60")
    page.dispatch_event(".slider input.low", "input")
    wait_until(page, f"document.querySelector('table.classes tbody').innerText !== {before!r}")
    assert " of " in page.inner_text("table.classes tbody")  # instances in the range of the total
    wait_until(page, "!document.querySelector('.review-grid').parentElement.innerText.includes('12 samples')")
    page.wait_for_selector(".tile .labelled.loaded")
    screenshot(page, "review")
    promote = page.locator(".actions button.primary")
    promised = int(re.search(r"(\d+) label", promote.inner_text()).group(1))
    promote.click()
    page.wait_for_selector(f".toast >> text=promoted {promised} label")
    page.click("text=Approval set")
    page.wait_for_selector(".tile")
    page.click(".tile >> nth=0")
    page.click(".actions >> text=Undo 1 selected sample")
    page.wait_for_selector(".toast >> text=returned")
    page.click(".actions >> text=Approve…")
    page.wait_for_selector(".dialog >> text=will be written to field blobs")
    page.click(".dialog button.primary")
    page.wait_for_selector(".badge.approved")
    info = runs.get_run(Store.open(), "blobs")
    assert info.status == "approved" and 0 < info.labels < promised
    assert not page.errors


def test_keyboard_review_selects_and_promotes(app):
    url, tokens, browser = app
    page = open_page(browser, url, tokens["editor"], "#/runs/blobs")
    page.wait_for_selector(".tile .labelled.loaded")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("x")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("x")
    assert page.locator(".tile.selected").count() == 2
    page.keyboard.press("p")
    page.wait_for_selector(".toast >> text=promoted")
    assert runs.get_run(Store.open(), "blobs").promoted >= 2
    page.keyboard.press("?")
    page.wait_for_selector(".dialog >> text=select or unselect the sample")
    screenshot(page, "keyboard-help")


def test_patches_select_by_click_and_shift_click_then_promote(app):
    url, tokens, browser = app
    page = open_page(browser, url, tokens["editor"], "#/runs/blobs/patches")
    page.wait_for_selector(".patch img")
    wait_until(page, "[...document.querySelectorAll('.patch img')].every(i => i.complete && i.naturalWidth)")
    page.click(".patch >> nth=0")
    page.click(".patch >> nth=3", modifiers=["Shift"])
    assert page.locator(".patch.selected").count() == 4
    screenshot(page, "patches")
    page.click("text=Promote selection")
    page.wait_for_selector(".toast >> text=promoted 4 labels")
    assert runs.get_run(Store.open(), "blobs").promoted == 4


def test_a_run_from_the_form_goes_live_to_review_and_errors_sit_by_their_field(app):
    pytest.importorskip("cv2")
    url, tokens, browser = app
    page = open_page(browser, url, tokens["editor"], "#/datasets/d/new-run")
    page.wait_for_selector("form.new-run")
    page.select_option("#model", "opencv-haar-face")
    page.fill("#field", "bad field!")
    page.click("text=Start run")
    page.wait_for_selector("#field-error >> text=not a valid name")
    page.fill("#field", "faces")
    page.fill("#min_confidence", "2")
    page.click("text=Start run")
    page.wait_for_selector("#min_confidence-error >> text=outside [0, 1]")
    page.fill("#min_confidence", "")
    screenshot(page, "new-run")
    page.click("text=Start run")
    page.wait_for_url(re.compile(r".*#/runs/"))
    page.wait_for_selector(".badge.in_review", timeout=60_000)
    assert runs.get_run(Store.open(), "faces").status == "in_review"
    page.wait_for_selector("#runtime >> text=runtime: opencv on cpu")  # what ran the model
    screenshot(page, "run-page")


def test_masks_are_drawn_tinted_over_their_boxes(app):
    url, tokens, browser = app
    page = open_page(browser, url, tokens["viewer"], "#/runs/masks")
    page.wait_for_selector(".tile .labelled.loaded")
    # masks load after their tiles: wait until each blob is filled at 45% opacity (alpha between 60 and 180)
    translucent = """[...document.querySelectorAll('.tile canvas')].filter(c => {
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 60 && data[i] < 180) n++;
        return n > 200;
    }).length >= 10"""
    wait_until(page, translucent)
    screenshot(page, "masks")


def test_another_reviewers_promote_shows_up_live(app):
    url, tokens, browser = app
    page = open_page(browser, url, tokens["viewer"], "#/runs/blobs")
    page.wait_for_selector("table.classes tbody tr")
    before = page.inner_text("table.classes tbody")
    assert "of" not in before  # the whole review set
    from verilabel.review.service import LabelQuery

    moved = review.promote(Store.open(), "blobs", LabelQuery(classes=["red"]), actor="someone-else")
    assert moved > 0
    wait_until(page, f"document.querySelector('table.classes tbody').innerText !== {before!r}")
    assert "red" not in page.inner_text("table.classes tbody")  # every red label left the review set


def test_a_run_started_from_a_filtered_grid_targets_that_filter(app):
    url, tokens, browser = app
    page = open_page(browser, url, tokens["editor"], "#/datasets/d")
    page.wait_for_selector(".tile")
    page.fill("input.view", "ids=1,2")
    page.click("form.filter button")
    wait_until(page, "document.querySelectorAll('#grid .tile').length === 2")
    assert page.locator("text=truth (COCO)").get_attribute("href").endswith("field=truth&format=coco")
    page.click("text=New run")
    page.wait_for_selector("form.new-run")
    assert page.input_value("#view") == "ids=1,2"


def test_a_generative_models_confidence_is_called_a_proxy_above_the_slider(app, tmp_path):
    """Florence-2 gives no score: its run's review says what the confidence is before anyone filters by it."""
    pytest.importorskip("transformers")
    from tests.support.random_models_vlm import save_florence2

    url, tokens, browser = app
    weights = save_florence2(tmp_path / "florence")
    request_ = request("captioned", model="florence-2-base", weights=str(weights), classes=["red"], device="cpu")
    request_.model_options = {"max_new_tokens": 16}
    info = runs.wait_run(Store.open(), runs.create_run(Store.open(), request_).id, timeout=180)
    assert info.status == "in_review", info.error
    page = open_page(browser, url, tokens["editor"], f"#/runs/{info.id}")
    note = page.wait_for_selector(".score-note")
    assert "proxy" in note.inner_text() and "florence-2-base" in note.inner_text()
    screenshot(page, "review-score-proxy")
    blobs = open_page(browser, url, tokens["editor"], "#/runs/blobs")
    blobs.wait_for_selector("table.classes tbody tr")
    assert blobs.locator(".score-note").count() == 0  # a model's own scores need no warning
    assert not page.errors and not blobs.errors
