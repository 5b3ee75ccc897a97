"""The studio driven as a person would, in a real Chromium, against `concept-transfer studio` on the toy world.

One server for the module (the command with no model argument: toy SDXL and the two demo sliders), one
browser; every test opens its own tab, so each is also a fresh session.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.studio.browser import launch_chromium

pytestmark = pytest.mark.browser
STATUS = "#status [data-testid=markdown]"  # the message itself, not the progress tracker beside it
STEPS = "6"
START_TIMEOUT_S = 300
RUN_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """`concept-transfer studio` on a free port; yields (url, output folder, its log lines)."""
    out = tmp_path_factory.mktemp("studio-out")
    command = [sys.executable, "-m", "transfer", "studio", "--port", str(free_port()), "--out", str(out)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not any(line.startswith("studio: open ") for line in lines):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("the studio did not start:\n" + "".join(lines[-40:]))
        time.sleep(0.2)
    url = next(line for line in lines if line.startswith("studio: open ")).split()[2]
    yield url, out, lines
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path_factory.mktemp("profile"))
        yield context
        context.close()


@pytest.fixture
def tab(studio, browser):
    """A new tab on the studio, loaded (its first slider row shown), with few sampling steps."""
    url, _, _ = studio
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#row-1-info", timeout=60_000)
    page.wait_for_function(
        "document.querySelector('#status [data-testid=markdown]').innerText.includes('Ready')"
    )
    set_number(page, "#steps", STEPS)
    yield page
    page.close()


def set_number(page, element: str, value: str) -> None:
    """Type into a slider's or number field's box and leave it, as a person does."""
    box = page.locator(f"{element} input[type=number]").first
    box.fill(value)
    box.press("Tab")


def act(page, button: str = "#generate") -> str:
    """Click an action and wait until the status line changes; returns it."""
    before = page.inner_text(STATUS)
    page.click(button)
    page.wait_for_function(
        f"document.querySelector('#status [data-testid=markdown]').innerText !== {json.dumps(before)}",
        timeout=RUN_TIMEOUT_MS,
    )
    return page.inner_text(STATUS)


def generate(page, button: str = "#generate") -> tuple[np.ndarray, dict]:
    """Run an action; returns the downloaded PNG's pixels and its metadata."""
    status = act(page, button)
    assert "done in" in status, status
    name = status.rsplit(": ", 1)[1]
    link = page.locator(f'#files a[download="{name}"]').first
    data = page.request.get(link.get_attribute("href")).body()
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB"), dtype=np.int16), dict(image.text)


def test_the_page_loads_offline_with_the_demo_sliders(studio, browser):
    url, _, _ = studio
    page = browser.new_page()
    outside = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else (
        outside.append(route.request.url), route.abort()))  # fmt: skip
    page.goto(url)
    page.wait_for_selector("#row-1-info", timeout=60_000)
    assert "eye size" in page.inner_text("#row-0-info") and "GAN layer" in page.inner_text("#row-0-info")
    assert "smile" in page.inner_text("#row-1-info") and "smiling" in page.inner_text("#row-1-info")
    assert not page.locator("#row-2-info").is_visible()
    assert outside == []  # no fonts, scripts or analytics from anywhere but the studio itself
    page.close()


def test_scale_two_differs_from_scale_zero_and_the_png_says_how_to_redo_it(tab):
    # The smile slider: its calibrated range reaches +3.5 (the eye-size slider's stops at +1.84).
    zero, _ = generate(tab)
    set_number(tab, "#row-1-scale", "2")
    two, text = generate(tab)
    assert np.abs(two - zero).mean() > 1.0
    record = json.loads(text["concept_transfer"])
    assert record["scales"] == [0.0, 2.0] and record["steps"] == int(STEPS)
    assert "smile.safetensors:2 " in tab.input_value("#command textarea")
    assert record["command"] == tab.input_value("#command textarea")


def test_start_noise_zero_gives_exactly_the_image_without_sliders(tab):
    for row in (0, 1):
        tab.locator(f"#row-{row}-on input[type=checkbox]").uncheck()
    bare, _ = generate(tab)
    for row in (0, 1):
        tab.locator(f"#row-{row}-on input[type=checkbox]").check()
        set_number(tab, f"#row-{row}-scale", "2")
    tab.locator("#gate-from-files input[type=checkbox]").uncheck()
    set_number(tab, "#start-noise", "0")
    gated, text = generate(tab)
    assert np.array_equal(gated, bare)
    assert json.loads(text["gate"])["weights"] == [0.0] * int(STEPS)
    assert "--start-noise 0" in tab.input_value("#command textarea")


def test_a_corrupt_slider_shows_an_error_and_the_next_generation_works(tab, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    before = tab.inner_text(STATUS)
    tab.set_input_files("#upload input[type=file]", str(corrupt))
    tab.wait_for_function(
        f"document.querySelector('#status [data-testid=markdown]').innerText !== {json.dumps(before)}"
    )
    assert "not a readable .safetensors" in tab.inner_text(STATUS)
    assert not tab.locator("#row-2-info").is_visible()
    pixels, _ = generate(tab)
    assert pixels.shape == (64, 64, 3)


def test_a_path_outside_the_allowed_folders_is_refused(tab, studio):
    url, _, _ = studio
    tab.click("button[role=tab]:has-text('Path')")
    for typed in ("/etc/passwd", "../../../../../../etc/passwd"):
        tab.fill("#path textarea, #path input", typed)
        status = act(tab, "#add-path")
        assert "outside the folders this studio was started with" in status
        tab.fill("#path textarea, #path input", "")
    for typed in ("/etc",):
        tab.click("button[role=tab]:has-text('Library')")
        tab.fill("#library-path textarea, #library-path input", typed)
        assert "outside the folders" in act(tab, "#browse")
    assert tab.request.get(f"{url}gradio_api/file=/etc/passwd").status in (403, 404)


def test_two_tabs_get_their_own_results_and_panels(studio, browser):
    url, _, _ = studio
    pages = [browser.new_page(), browser.new_page()]
    for page in pages:
        page.goto(url)
        page.wait_for_selector("#row-1-info", timeout=60_000)
        set_number(page, "#steps", STEPS)
    first, second = pages
    set_number(first, "#seed", "11")
    set_number(first, "#row-0-scale", "2")
    set_number(second, "#seed", "22")
    second.click("#row-1-remove")
    second.wait_for_selector("#row-1-info", state="hidden")
    befores = [page.inner_text(STATUS) for page in pages]
    for page in pages:  # both queued at once
        page.click("#generate")
    for page, before in zip(pages, befores):
        page.wait_for_function(
            f"document.querySelector('#status [data-testid=markdown]').innerText !== {json.dumps(before)}",
            timeout=RUN_TIMEOUT_MS,
        )
    texts = []
    for page in pages:
        name = page.inner_text(STATUS).rsplit(": ", 1)[1]
        href = page.locator(f'#files a[download="{name}"]').first.get_attribute("href")
        texts.append(
            json.loads(Image.open(io.BytesIO(page.request.get(href).body())).text["concept_transfer"])
        )
    assert texts[0]["seed"] == 11 and [s["name"] for s in texts[0]["sliders"]] == ["eye size", "smile"]
    assert texts[1]["seed"] == 22 and [s["name"] for s in texts[1]["sliders"]] == ["eye size"]
    assert first.locator("#row-1-info").is_visible()  # the other tab's removal did not touch this panel
    assert "seed" not in first.input_value("#command textarea") or "--seeds 11" in first.input_value(
        "#command textarea"
    )
    for page in pages:
        page.close()


def test_compare_edit_library_and_stop(tab, tmp_path):
    tab.click("button[role=tab]:has-text('Compare')")
    tab.fill("#compare-scales textarea, #compare-scales input", "-2,2")
    status = act(tab, "#compare")
    assert "Compare done" in status and "--scales=-2,2" in tab.input_value("#command textarea")
    picture = tmp_path / "me.png"
    Image.new("RGB", (96, 80), (190, 140, 110)).save(picture)
    tab.click("button[role=tab]:has-text('Edit')")
    tab.set_input_files("#edit-image input[type=file]", str(picture))
    tab.wait_for_selector("#edit-image img")
    edited, text = generate(tab, "#edit")
    assert (
        edited.shape == (64, 64, 3) and text["strength"] == "0.6" and "--image=" in text["concept_transfer"]
    )
    tab.check("#edit-method input[value='edit-friendly']")  # by inversion (apply --invert)
    inverted, text = generate(tab, "#edit")
    assert inverted.shape == (64, 64, 3) and text["invert"] == "edit-friendly" and "strength" not in text
    assert "--invert edit-friendly" in tab.input_value("#command textarea")
    tab.click("#row-1-remove")
    tab.wait_for_selector("#row-1-info", state="hidden")
    tab.click("button[role=tab]:has-text('Library')")
    tab.click("#gallery button[aria-label='Thumbnail 2 of 2']")
    tab.wait_for_selector("#row-1-info", state="visible")
    assert "smile" in tab.inner_text("#row-1-info")
    set_number(tab, "#steps", "100")
    tab.click("button[role=tab]:has-text('Generate')")
    tab.click("#generate")
    time.sleep(2)
    tab.click("#stop")
    tab.wait_for_function("document.querySelector('#status [data-testid=markdown]').innerText.startsWith('Cancel') || "
                          "document.querySelector('#status [data-testid=markdown]').innerText.startsWith('Nothing')")  # fmt: skip
    set_number(tab, "#steps", STEPS)
    assert "Generate done" in act(tab, "#generate")
