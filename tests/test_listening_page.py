"""The listening page generate.py writes: self-contained, relative links, and every sound plays in a real browser."""

import html as html_module
import json
import re
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import soundfile as sf

import generate
from conftest import HOP_LENGTH


# Appended to a copy of the page: waits until every <audio> knows its duration (or
# fails) and every <img> has loaded (or failed), then writes a JSON report into the DOM.
BROWSER_PROBE = """
<script>
(function () {
  var audios = Array.prototype.slice.call(document.querySelectorAll("audio"));
  var images = Array.prototype.slice.call(document.querySelectorAll("img"));
  var report = {audio: [], images: []};
  var pending = audios.length + images.length;
  function settled() {
    if (--pending > 0) return;
    var out = document.createElement("pre");
    out.id = "browser-report";
    out.textContent = JSON.stringify(report);
    document.body.appendChild(out);
  }
  audios.forEach(function (audio) {
    function done(error) {
      report.audio.push({src: audio.getAttribute("src"), duration: audio.duration, error: error});
      settled();
    }
    if (audio.readyState >= 1) { done(null); return; }
    audio.addEventListener("loadedmetadata", function () { done(null); }, {once: true});
    audio.addEventListener("error", function () { done(audio.error ? audio.error.code : "error"); }, {once: true});
    audio.load();
  });
  images.forEach(function (image) {
    function done() {
      report.images.push({src: image.getAttribute("src"), naturalWidth: image.naturalWidth});
      settled();
    }
    if (image.complete) { done(); return; }
    image.addEventListener("load", done, {once: true});
    image.addEventListener("error", done, {once: true});
  });
})();
</script>
"""
# A file that is not there: the browser must report it, or the check proves nothing.
MISSING_AUDIO = '<audio controls preload="metadata" src="generated/not_there.wav"></audio>'


class LinkCollector(HTMLParser):
    """Every tag name, and every src/href value, of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags, self.links, self.audio, self.images = [], [], [], []

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        self.tags.append(tag)
        for name in ("src", "href"):
            if name in attributes:
                self.links.append(attributes[name])
        if tag == "audio":
            self.audio.append(attributes["src"])
        if tag == "img":
            self.images.append(attributes["src"])


@pytest.fixture(scope="module")
def page(tmp_path_factory, conditional_project):
    """generate.py's output (4 generated, 3 reconstructed, a 5-step morph) from a tiny conditional model."""
    root = conditional_project
    output = tmp_path_factory.mktemp("page") / "samples"
    written = generate.main([f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}",
                             f"--output_dir={output}", "--num_generated=4", "--num_reconstructed=3",
                             "--griffin_lim_iterations=4", "--morph_from=kick",
                             f"--morph_to={root / 'audio' / 'snare' / 'snare_001.wav'}", "--morph_steps=5"])
    html = (output / "index.html").read_text(encoding="utf-8")
    links = LinkCollector()
    links.feed(html)
    return output, written, html, links


def relative_paths(written, output):
    return [path.relative_to(output).as_posix() for kind in ("generated", "original", "reconstructed", "morph")
            for path in written[kind]]


def png_size(path):
    """(width, height) in pixels, from a PNG file's header."""
    header = Path(path).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.mark.slow
def test_every_link_is_relative_and_stays_inside_the_output_folder(page):
    output, _, _, links = page
    assert links.links, "the page links to nothing"
    for link in links.links:
        if link.startswith("#"):
            continue  # a section of the page itself
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc and not link.startswith("/"), f"absolute link {link!r}"
        target = (output / unquote(parts.path)).resolve()
        assert target.is_relative_to(output.resolve()), f"{link!r} points outside {output}"
        assert target.is_file(), f"{link!r} points to no file"


@pytest.mark.slow
def test_the_page_needs_nothing_from_outside_no_scripts_styles_or_fonts(page):
    _, _, html, links = page
    assert not {"script", "link", "iframe", "object", "embed"} & set(links.tags)
    assert not re.search(r"https?://|@import|url\(", html)
    assert "<style>" in html


@pytest.mark.slow
def test_every_written_sound_is_on_the_page_once_with_its_spectrogram(page):
    output, written, _, links = page
    expected = relative_paths(written, output)
    assert len(expected) == 4 + 3 + 3 + 5
    assert sorted(links.audio) == sorted(expected)
    pictures = [f"spectrograms/{path.removesuffix('.wav')}.png" for path in expected]
    assert set(pictures) <= set(links.images)
    for picture in pictures:
        assert png_size(output / picture) == tuple(generate.PAGE_IMAGE_SIZE)


@pytest.mark.slow
def test_originals_sit_beside_their_reconstructions_and_the_morph_is_in_order(page):
    output, written, _, links = page
    for original in written["original"]:
        position = links.audio.index(f"original/{original.name}")
        assert links.audio[position + 1] == f"reconstructed/{original.name}"
    morph = [src for src in links.audio if src.startswith("morph/")]
    assert morph == [f"morph/morph_{index:02d}.wav" for index in range(5)]
    assert "morph/morph_strip.png" in links.images


@pytest.mark.slow
def test_generated_sounds_are_grouped_under_their_class(page):
    _, _, html, _ = page
    section = html[html.index('<section id="generated">'):html.index("</section>")]
    headings = re.findall(r"<h3>(.*?)</h3>", section)
    assert headings == ["clap", "hihat", "kick", "snare"]
    for label in headings:
        group = section[section.index(f"<h3>{label}</h3>"):]
        assert re.search(r'src="generated/generated_(\w+)_\d+\.wav"', group)[1] == label


@pytest.mark.slow
def test_the_page_shows_the_settings_of_the_run_and_the_model_parameters(page):
    _, _, html, _ = page
    settings = html[html.index('<section id="settings">'):]
    assert "<th>MORPH_STEPS</th><td>5</td>" in settings
    assert "<th>MORPH_FROM</th><td>&quot;kick&quot;</td>" in settings
    assert f"<th>hop_length</th><td>{HOP_LENGTH}</td>" in settings
    assert "<th>classes</th><td>[&quot;clap&quot;, &quot;hihat&quot;, &quot;kick&quot;" in settings


@pytest.mark.slow
def test_in_a_real_browser_every_sound_loads_and_every_picture_renders(page, tmp_path, chromium):
    output, written, html, links = page
    check_page = output / "_browser_check.html"  # beside index.html, so the same relative links work
    check_page.write_text(html.replace("</body>", MISSING_AUDIO + BROWSER_PROBE + "</body>"), encoding="utf-8")
    try:
        browser = subprocess.run(
            [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
             "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=10000", "--dump-dom",
             check_page.as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        check_page.unlink()
    found = re.search(r'<pre id="browser-report">(.*?)</pre>', browser.stdout, re.S)
    assert found, f"no report from the browser (exit {browser.returncode}): {browser.stderr[-2000:]}"
    report = json.loads(html_module.unescape(found[1]))

    audio = {entry["src"]: entry for entry in report["audio"]}
    assert audio.pop("generated/not_there.wav")["error"] is not None  # the check sees a missing file
    assert sorted(audio) == sorted(links.audio)
    for src, entry in audio.items():
        assert entry["error"] is None, f"{src} did not load: error {entry['error']}"
        seconds = sf.info(output / unquote(src)).duration
        assert entry["duration"] == pytest.approx(seconds, abs=0.05), src
        assert entry["duration"] > 0
    assert sorted(entry["src"] for entry in report["images"]) == sorted(links.images)
    for entry in report["images"]:
        assert entry["naturalWidth"] > 0, f"{entry['src']} did not render"
