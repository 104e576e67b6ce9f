"""Our DICOM SEG, SR and Secondary Capture in OHIF 3.13, the open web viewer most PACS users have.

Orthanc (with its DICOMweb plugin) holds a US study and the objects ``segdino dicom --also-sc --also-sr`` wrote for
it; OHIF's built viewer (``dist/`` of the npm package ``@ohif/app``, downloaded by ``.ci/run`` into a cache folder,
never into the repository) is served with a proxy to Orthanc from one origin (:mod:`tests.viewer.ohif`) and driven
by headless Chromium (Debian's ``chromium`` and ``chromium-driver``) through selenium. The user's clicks: open the
study, double-click the SEG thumbnail, answer "yes" to the hydrate prompt; the SEG's colour must lie where the mask
is, and the SC must display; the browser console must show no ``TypeError`` and the page no error boundary. The SR
is stored with them; its measurements in OHIF's measurement panel are not tested yet (OHIF 3.13 draws the outline
but lists no measurement: issue 24 stays open on that point).

Screenshots go to ``$SEGDINO_TEST_ARTIFACTS/ohif`` (or the test's tmp folder); the path is printed.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid

from tests.conftest import import_or_skip
from tests.orthanc import DICOMWEB_PLUGIN, Orthanc
from tests.viewer.ohif import ViewerServer

webdriver = import_or_skip("selenium.webdriver", "pip install selenium", "OHIF is not tested")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

OHIF_VERSION = "3.13.2"
SINGLE = "us/pydicom__pydicom-data/OBXXXX1A_rle.dcm"  # 800x600 RGB, RLE
CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"  # 30-frame JPEG YBR cine: its first 3 frames
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 60
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "ohif-seg.png"


def _required(what: str, reason: str) -> None:
    if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
        pytest.fail(f"SEGDINO_REQUIRE_FIXTURES=1 but {what}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def ohif_dist() -> Path:
    """OHIF's built viewer: $SEGDINO_OHIF_DIST, else the cache folder .ci/run fills with `npm pack @ohif/app`."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    dist = Path(os.environ.get("SEGDINO_OHIF_DIST") or cache / "segdino-tests" / f"ohif-{OHIF_VERSION}" / "dist")
    if not (dist / "index.html").is_file():
        _required(
            f"OHIF's viewer is not at {dist}",
            f"OHIF {OHIF_VERSION} not found at {dist} (.ci/run fetches it: npm pack @ohif/app@{OHIF_VERSION}, "
            "then extract package/dist there, or set SEGDINO_OHIF_DIST)",
        )
    return dist


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    root = os.environ.get("SEGDINO_TEST_ARTIFACTS")
    folder = Path(root) / "ohif" if root else tmp_path_factory.mktemp("ohif-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nOHIF screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def pacs(orthanc_binary, tmp_path_factory):
    if not DICOMWEB_PLUGIN.is_file():
        _required(
            f"{DICOMWEB_PLUGIN} is missing", "Orthanc's DICOMweb plugin missing (apt-get install orthanc-dicomweb)"
        )
    server = Orthanc(orthanc_binary, tmp_path_factory.mktemp("orthanc"), {}, dicomweb=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(ohif_dist, pacs):
    """Headless Chromium on the viewer's origin; yields (driver, viewer URL)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium or not CHROMEDRIVER.is_file():
        _required(
            "chromium or /usr/bin/chromedriver is missing",
            "headless Chromium and its driver not installed (apt-get install chromium chromium-driver)",
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,900",
        "--disable-dev-shm-usage",
        "--enable-unsafe-swiftshader",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with ViewerServer(ohif_dist, pacs.url) as viewer:
        from selenium.webdriver.chrome.service import Service

        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(WAIT_S)
        driver.set_script_timeout(WAIT_S)
        try:
            yield driver, viewer.url
        finally:
            driver.quit()


def _stow(pacs: Orthanc, paths: list[Path]) -> None:
    from dicomweb_client.api import DICOMwebClient

    DICOMwebClient(pacs.dicomweb_url).store_instances([pydicom.dcmread(path) for path in paths])


def _study(dicom_dir: Path, name: str, folder: Path) -> Path:
    folder.mkdir(parents=True)
    if name == "cine":
        cine = pydicom.dcmread(dicom_dir / CINE)
        frames = list(generate_frames(cine.PixelData, number_of_frames=int(cine.NumberOfFrames)))[:3]
        cine.PixelData, cine.NumberOfFrames = encapsulate(frames), 3
        cine.SOPInstanceUID = cine.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        cine.save_as(folder / "cine.dcm")
        return folder / "cine.dcm"
    shutil.copy(dicom_dir / SINGLE, folder / "single.dcm")
    return folder / "single.dcm"


@pytest.fixture(scope="module")
def studies(dicom_dir, segmenter_factory, pacs, tmp_path_factory):
    """``{name: (source, SEG, SC paths)}``: each source, and what run_dicom wrote for it, STOWed to Orthanc."""
    from segdino_monai.dicom.seg import SegOptions
    from segdino_monai.services.dicom_batch import run_dicom

    work = tmp_path_factory.mktemp("viewer")
    found = {}
    for name in ("single", "cine"):
        source = _study(dicom_dir, name, work / "in" / name)
        run_dicom(
            [source],
            work / "out" / name,
            segmenter_factory("ultrasound"),
            seg_options=SegOptions(also_sc=True, also_sr=True),
            progress=False,
        )
        [folder] = [p for p in (work / "out" / name).iterdir() if p.is_dir()]
        scs = sorted(folder.glob("sc*.dcm"))
        assert (folder / "seg.dcm").is_file() and (folder / "sr.dcm").is_file() and scs, sorted(folder.iterdir())
        _stow(pacs, [source, folder / "seg.dcm", folder / "sr.dcm", *scs])
        found[name] = (pydicom.dcmread(source), pydicom.dcmread(folder / "seg.dcm"), scs)
    return found


# --- the page -------------------------------------------------------------------------------------------------------

ERROR_TEXTS = ("Something went wrong", "Sorry, something went wrong")

# the image shown in the viewport, with cornerstone's own geometry (the viewer exposes window.cornerstone)
VIEWPORT_IMAGE = """
const cs = window.cornerstone;
if (!cs) return null;
const shown = cs.getEnabledElements().filter((e) => e.viewport && e.viewport.getCurrentImageId
  && e.viewport.getCurrentImageId());
if (!shown.length) return null;
const vp = shown[0].viewport;
const data = vp.getImageData && vp.getImageData();
if (!data || !data.imageData) return null;
const canvas = vp.getCanvas ? vp.getCanvas() : vp.canvas;
const dims = data.dimensions;
const corner = (c, r) => vp.worldToCanvas(data.imageData.indexToWorld([c, r, 0]));
return {
  imageId: vp.getCurrentImageId(),
  dims: dims,
  origin: corner(-0.5, -0.5),
  end: corner(dims[0] - 0.5, dims[1] - 0.5),
  scale: canvas.width / canvas.clientWidth,
  png: canvas.toDataURL('image/png'),
};
"""


class Broken(AssertionError):
    pass


class Page:
    """The browser tab; every wait fails at once on an error boundary or a TypeError in the console."""

    def __init__(self, driver, artifacts: Path, name: str) -> None:
        self.driver, self.artifacts, self.name = driver, artifacts, name
        self.log: list[str] = []

    def console(self) -> list[str]:
        self.log += [f"{entry['level']} {entry['message']}" for entry in self.driver.get_log("browser")]
        return self.log

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def problems(self) -> str:
        text = self.text()
        shown = [t for t in ERROR_TEXTS if t.lower() in text.lower()]
        errors = [line.split("\n")[0] for line in self.console() if "TypeError" in line]
        if shown or errors:
            return f"the page shows {shown}; TypeErrors in the console: {errors}"
        return ""

    def report(self, what: str) -> str:
        self.driver.save_screenshot(str(self.artifacts / f"{self.name}-failed.png"))
        (self.artifacts / f"{self.name}-console.txt").write_text("\n".join(self.console()))
        console = "\n".join(
            line.split("\n")[0][:400]
            for line in self.console()
            if line.startswith(("SEVERE", "WARNING")) or "hydrat" in line.lower()
        )
        cys = self.driver.execute_script(
            "return [...document.querySelectorAll('[data-cy]')].map((e) => e.dataset.cy).join(' ');"
        )
        return f"{self.name}: {what}\npage text:\n{self.text()[:1000]}\ndata-cy: {cys}\nconsole:\n{console}"

    def wait(self, condition, what: str, timeout: float = WAIT_S):
        def check(driver):
            problem = self.problems()
            if problem:
                raise Broken(problem)
            return condition(driver)

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.5).until(check)
        except Broken as err:
            raise AssertionError(self.report(f"while waiting for {what}: {err}")) from None
        except TimeoutException:
            raise AssertionError(self.report(f"timed out after {timeout} s waiting for {what}")) from None

    def check(self, step: str) -> None:
        self.driver.save_screenshot(str(self.artifacts / f"{self.name}-{step}.png"))
        problem = self.problems()
        assert not problem, self.report(f"{step}: {problem}")

    def viewport(self, what: str) -> dict:
        return self.wait(lambda d: d.execute_script(VIEWPORT_IMAGE), f"an image in the viewport ({what})")

    def thumbnail(self, modality: str):
        """The study browser's thumbnail of the first series of ``modality``."""

        def find(driver):
            for thumb in driver.find_elements(By.CSS_SELECTOR, '[data-cy^="study-browser-thumbnail"]'):
                labels = thumb.find_elements(By.CSS_SELECTOR, '[data-cy="series-modality-label"]')
                if any(label.text.strip().upper() == modality for label in labels):
                    return thumb
            return False

        return self.wait(find, f"the {modality} thumbnail")

    def open(self, modality: str) -> None:
        """Double-click the series' thumbnail: it loads into the active viewport."""
        thumb = self.thumbnail(modality)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", thumb)
        ActionChains(self.driver).double_click(thumb).perform()

    def click(self, css: str, what: str) -> None:
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, css), what)[0].click()


def _pixels(shot: dict) -> np.ndarray:
    png = base64.b64decode(shot["png"].split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _mask_on_canvas(mask: np.ndarray, shot: dict, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The mask resampled (nearest) onto the canvas's pixels, and where the image is on the canvas."""
    rows, cols = mask.shape
    (x0, y0), (x1, y1) = np.array(shot["origin"]) * shot["scale"], np.array(shot["end"]) * shot["scale"]
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    c = np.floor((xs - x0) / (x1 - x0) * cols).astype(int)
    r = np.floor((ys - y0) / (y1 - y0) * rows).astype(int)
    image = (c >= 0) & (c < cols) & (r >= 0) & (r < rows)
    on = np.zeros(shape, bool)
    on[image] = mask[r[image], c[image]]
    return on, image


@pytest.mark.parametrize("name", ["single", "cine"])
def test_ohif_shows_seg_and_sc(name, studies, browser, artifacts):
    driver, url = browser
    source, seg, scs = studies[name]
    page = Page(driver, artifacts, name)
    start = time.monotonic()
    driver.get(f"{url}/viewer?StudyInstanceUIDs={source.StudyInstanceUID}")
    page.thumbnail("US")
    for skip in driver.find_elements(By.XPATH, "//*[normalize-space(text())='Skip all']"):
        skip.click()  # the first visit's guided tour
    page.viewport("the study")
    page.check("1-study")

    # the source image alone, then the SEG over it: the user's double-click and "yes" to the hydrate prompt
    page.open("US")
    before = page.viewport("the source")
    page.check("2-source")
    page.open("SEG")
    page.click('[data-cy="yes-hydrate-btn"]', "the SEG's hydrate prompt")
    time.sleep(2)  # the labelmap is drawn on a later render
    after = page.viewport("the hydrated SEG")
    page.check("3-seg")
    first, second = _pixels(before), _pixels(after)
    assert first.shape == second.shape and before["dims"] == after["dims"], (before["dims"], after["dims"])
    mask = seg.pixel_array.reshape(-1, *seg.pixel_array.shape[-2:])[0] > 0  # the first frame is shown
    on, image = _mask_on_canvas(mask, after, first.shape[:2])
    changed = np.abs(second - first).sum(-1) > 30
    inside, outside = changed[on].mean(), changed[image & ~on].mean()
    Image.fromarray(second.astype(np.uint8)).save(artifacts / f"{name}-3-seg-canvas.png")
    print(f"{name}: the SEG's colour on {inside:.1%} of the mask's pixels, {outside:.1%} of the others")
    assert inside > 0.5 and outside < 0.2, (inside, outside)
    if name == "single":  # the README's picture (docs/images/ohif-seg.png) with SEGDINO_UPDATE_DOCS_IMAGES=1
        shot = Image.open(artifacts / f"{name}-3-seg.png").convert("RGB")
        shot.thumbnail((1000, 650))
        shot.quantize(96).save(artifacts / DOCS_IMAGE.name, optimize=True)
        if os.environ.get("SEGDINO_UPDATE_DOCS_IMAGES") == "1":
            shutil.copy(artifacts / DOCS_IMAGE.name, DOCS_IMAGE)

    # the Secondary Capture overlay displays
    page.open("OT")
    sop = str(pydicom.dcmread(scs[0], stop_before_pixels=True).SOPInstanceUID)
    shot = page.wait(lambda d: (s := d.execute_script(VIEWPORT_IMAGE)) and sop in s["imageId"] and s, "the SC")
    page.check("4-sc")
    assert _pixels(shot).std() > 5

    print(f"{name}: {time.monotonic() - start:.0f} s in the browser")
