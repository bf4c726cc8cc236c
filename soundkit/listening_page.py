"""The listening page generate.py writes: every sound with a player and its spectrogram, in one HTML file.

The page is self-contained (inline style, no scripts, no fonts, relative links),
so it opens in any browser, offline, straight from the output folder.
"""

import html
import json
from pathlib import Path
from typing import Final
from urllib.parse import quote

import matplotlib
from matplotlib.figure import Figure

from soundkit.fileio import atomic_write
from soundkit.plots import save_figure, show_spectrogram
from soundkit.spectrogram import wav_spectrogram_db

IMAGE_SIZE: Final = (320, 160)         # pixels (width, height) of each sound's picture, unless the settings say

# Fixed looks of the page.
_PAGE_FIGURE_STYLE = {"font.size": 6, "axes.labelsize": 6, "xtick.labelsize": 6, "ytick.labelsize": 6,
                     "xtick.major.size": 2, "ytick.major.size": 2, "xtick.major.pad": 1.5,
                     "ytick.major.pad": 1.5, "axes.labelpad": 1.5}


_PAGE_MARGINS_PX = (38, 8, 26, 5)       # left, right, bottom, top around each picture's axes


_PAGE_STYLE = """
:root { color-scheme: light; --ink: #1d1d1f; --muted: #5f6368; --line: #dedbd5; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; background: #f4f2ee; color: var(--ink);
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { max-width: 1100px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 4px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 14px; margin: 14px 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .06em; }
p { margin: 4px 0 10px; max-width: 900px; }
.muted { color: var(--muted); }
nav a { margin-right: 14px; color: #8a3b12; }
.groups { display: flex; flex-wrap: wrap; gap: 6px 36px; }
.sounds { display: flex; flex-wrap: wrap; gap: 14px; }
.sound, .pair { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px;
                box-shadow: 0 1px 2px rgba(0, 0, 0, .05); margin: 0; }
.pair { display: flex; flex-direction: column; gap: 4px; }
.pair > .name { font-weight: 600; font-size: 13px; padding: 0 2px; }
.pair > .sides { display: flex; gap: 10px; }
.pair .sound { border: 0; box-shadow: none; padding: 0; }
.sound img { display: block; border-radius: 4px; }
.sound figcaption { font-size: 13px; margin: 6px 2px 2px; overflow-wrap: anywhere; }
.sound audio { display: block; width: 100%; height: 34px; margin-top: 4px; }
.strip { display: block; max-width: 100%; height: auto; margin-top: 16px; background: #fff;
         border: 1px solid var(--line); border-radius: 8px; }
.tables { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; background: var(--card); font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { font-weight: 500; color: var(--muted); }
td { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; overflow-wrap: anywhere;
     max-width: 420px; }
"""


def write_spectrogram_pngs(wav_paths, png_paths, params, size=IMAGE_SIZE):
    """Draw the spectrogram of each WAV file as a small PNG for the listening page.

    One figure is drawn and then only its picture is replaced for each sound:
    about 40 ms per PNG instead of 100.

    Parameters
    ----------
    wav_paths, png_paths : list of path-like
        Parallel lists.
    params : dict
        The model's spectrogram parameters (sample_rate, frame_size, hop_length).
    size : (int, int)
        Width and height of every picture in pixels.

    Returns
    -------
    list of pathlib.Path
        The PNGs: dB relative to each sound's peak (0 to -80 dB), time in
        seconds, frequency in Hz.
    """
    width, height = size
    left, right, bottom, top = _PAGE_MARGINS_PX
    written, shown_shape, mesh, figure = [], None, None, None
    with matplotlib.rc_context(_PAGE_FIGURE_STYLE):
        for wav_path, png_path in zip(wav_paths, png_paths):
            spectrogram_db = wav_spectrogram_db(wav_path, params)
            if spectrogram_db.shape == shown_shape:
                mesh.set_array(spectrogram_db)
            else:  # the first sound, or one of another length
                figure = Figure(figsize=(width / 100, height / 100))
                axes = figure.add_axes((left / width, bottom / height, 1 - (left + right) / width,
                                        1 - (bottom + top) / height))
                mesh = show_spectrogram(axes, spectrogram_db, params, vmin=-80, vmax=0)
                axes.set_ylabel("Hz")
                shown_shape = spectrogram_db.shape
            written.append(save_figure(figure, png_path, dpi=100))
    return written


def _text(value):
    return html.escape(str(value), quote=True)


def _link(relative_path):
    """A relative URL for a path inside the output folder, escaped for an HTML attribute."""
    return _text(quote(Path(relative_path).as_posix()))


def _setting_text(value):
    return json.dumps(value, ensure_ascii=False)


def _sound_figure(sound, caption, image_size):
    width, height = image_size
    return (f'<figure class="sound">'
            f'<img src="{_link(sound["png"])}" width="{width}" height="{height}" '
            f'alt="spectrogram of {_text(sound["name"])}">'
            f'<figcaption>{_text(caption)}</figcaption>'
            f'<audio controls preload="metadata" src="{_link(sound["wav"])}"></audio></figure>')


def _by_label(items, label_of):
    """[(label, items)] in order of first appearance."""
    groups = {}
    for item in items:
        groups.setdefault(label_of(item), []).append(item)
    return list(groups.items())


def _grouped(items, label_of, render):
    """The rendered items under a heading per class (none when no item has a class)."""
    groups = _by_label(items, label_of)
    parts = []
    for label, members in groups:
        heading = f"<h3>{_text(label or 'no class')}</h3>" if label or len(groups) > 1 else ""
        parts.append(f'<div class="group">{heading}<div class="sounds">'
                     + "".join(render(member) for member in members) + "</div></div>")
    return '<div class="groups">' + "".join(parts) + "</div>"


def _table(caption, rows):
    body = "".join(f"<tr><th>{_text(name)}</th><td>{_text(_setting_text(value))}</td></tr>"
                   for name, value in rows.items())
    return f"<table><caption>{_text(caption)}</caption>{body}</table>"


def pack_section(pack):
    """The sample pack's section: its two instruments, and the key and sounds of every class."""
    rows = "".join(f"<tr><th>{_text(label)}</th><td>{key}</td><td>{len(pack['samples'][label])}</td></tr>"
                   for label, key in pack["keys"].items())
    links = (f'<p><a href="{_link(pack["sfz"])}">{_text(Path(pack["sfz"]).name)}</a> (SFZ: sfizz, Sforzando) and '
             f'<a href="{_link(pack["dspreset"])}">{_text(Path(pack["dspreset"]).name)}</a> (Decent Sampler), '
             f'with the WAVs in <code>{_text(Path(pack["sfz"]).parent.as_posix())}/samples/</code>.</p>')
    table = f"<table><caption>General MIDI keys</caption><tr><th>class</th><th>key</th><th>sounds</th></tr>{rows}</table>"
    return ("pack", "Sample pack", "The new sounds, ready to load into a sampler: each class on its General MIDI "
            "drum key, its sounds taking turns at random.", links + table)


def reconstruction_section(original, reconstructed, image_size):
    """Each original held-out clip beside its reconstruction, grouped by class."""
    originals = {sound["name"]: sound for sound in original}
    pairs = [(originals[sound["name"]], sound) for sound in reconstructed if sound["name"] in originals]

    def pair_html(pair):
        original, reconstructed = pair
        return (f'<div class="pair"><div class="name">{_text(original["name"])}</div><div class="sides">'
                + _sound_figure(original, "original", image_size)
                + _sound_figure(reconstructed, "reconstructed", image_size) + "</div></div>")

    return ("reconstructed", "Originals and their reconstructions",
            "Held-out clips the model did not train on. The original goes through the same "
            "phase reconstruction, so the difference you hear is the model's.",
            _grouped(pairs, lambda pair: pair[0]["label"], pair_html))


def morph_section(morph_sounds, settings, label_names, morph_strip, image_size):
    """The steps of a morph in order, with the strip of their spectrograms."""
    steps = len(morph_sounds)
    note = (f"{steps} steps, {settings.get('MORPH_INTERPOLATION')} interpolation in the latent space; "
            f"the loudness range moves in a straight line.")
    if label_names:
        note += " The class the decoder is given switches from the start's to the end's halfway."
    captions = [f"step {index}" for index in range(steps)]
    captions[0] += f": {Path(str(settings.get('MORPH_FROM', ''))).name}"
    captions[-1] += f": {Path(str(settings.get('MORPH_TO', ''))).name}"
    figures = "".join(_sound_figure(sound, caption, image_size) for sound, caption in zip(morph_sounds, captions))
    strip = (f'<img class="strip" src="{_link(morph_strip)}" alt="the morph\'s spectrograms in order">'
             if morph_strip else "")
    return ("morph", f"Morph: {settings.get('MORPH_FROM')} → {settings.get('MORPH_TO')}", note,
            f'<div class="sounds">{figures}</div>{strip}')


def listening_page_html(sounds, settings, params, label_names=(), morph_strip=None, pack=None):
    """The listening page: one self-contained HTML document (inline style, no scripts, relative links).

    Parameters
    ----------
    sounds : list of dict
        One per sound, in order, with keys ``kind`` ("generated", "original",
        "reconstructed" or "morph"), ``name``, ``label`` ("" when none), and
        ``wav`` and ``png``: paths relative to the page.
    settings : dict
        generate.py's effective settings (shown in a table; PAGE_IMAGE_SIZE
        also sizes the pictures).
    params : dict
        The model's spectrogram parameters (shown in a table).
    label_names : sequence of str
        The model's classes, if it is conditional.
    morph_strip : str, optional
        Relative path of the morph's strip picture.
    pack : dict, optional
        What ``sample_pack.write_sample_pack`` returned, with its paths relative to the page.

    Returns
    -------
    str
        The page; every text is HTML-escaped.
    """
    image_size = settings.get("PAGE_IMAGE_SIZE", IMAGE_SIZE)
    of_kind = {kind: [sound for sound in sounds if sound["kind"] == kind]
               for kind in ("generated", "variations", "original", "reconstructed", "morph")}
    sections = []
    if of_kind["generated"]:
        sections.append(("generated", "New sounds", "Decoded from random points of the prior "
                         f"(temperature {settings.get('TEMPERATURE')}, seed {settings.get('SEED')}).",
                         _grouped(of_kind["generated"], lambda sound: sound["label"],
                                  lambda sound: _sound_figure(sound, sound["name"], image_size))))
    if of_kind["variations"]:
        sections.append(("variations", f"Variations of {Path(str(settings.get('VARIATIONS_OF', ''))).name}",
                         f"Decoded near the sound's place in the latent space (spread "
                         f"{settings.get('VARIATION_SPREAD')} posterior standard deviations, seed "
                         f"{settings.get('SEED')}).",
                         _grouped(of_kind["variations"], lambda sound: sound["label"],
                                  lambda sound: _sound_figure(sound, sound["name"], image_size))))
    if pack:
        sections.append(pack_section(pack))
    if of_kind["reconstructed"]:
        sections.append(reconstruction_section(of_kind["original"], of_kind["reconstructed"], image_size))
    if of_kind["morph"]:
        sections.append(morph_section(of_kind["morph"], settings, label_names, morph_strip, image_size))
    model_rows = dict(params)
    if label_names:
        model_rows = {"classes": list(label_names), **model_rows}
    sections.append(("settings", "Settings", "The settings of this run of generate.py and the spectrogram "
                     "parameters of the model.",
                     '<div class="tables">' + _table("generate.py", settings)
                     + _table("model (params.json)", model_rows) + "</div>"))

    count = sum(len(of_kind[kind]) for kind in ("generated", "variations", "reconstructed", "morph"))
    nav = "".join(f'<a href="#{key}">{_text(heading.split(":")[0])}</a>' for key, heading, _, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_text(heading)}</h2><p class="muted">{_text(intro)}</p>'
                   f"{content}</section>" for key, heading, intro, content in sections)
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Listening page: {_text(settings.get('MODEL_DIR', ''))}</title>"
            f"<style>{_PAGE_STYLE}</style></head><body>"
            f"<header><h1>Listening page</h1>"
            f"<p>{count} sounds from the model in <code>{_text(settings.get('MODEL_DIR', ''))}</code>, "
            f"at {_text(params.get('sample_rate'))} Hz. Each picture is the spectrogram of the sound "
            f"as written: dB relative to its peak (0 to −80 dB, dark = quiet), time in seconds, "
            f"frequency in Hz.</p><nav>{nav}</nav></header>"
            f"{body}</body></html>\n")


def write_listening_page(output_dir, written, labels, settings, params, label_names=(), morph_strip=None,
                         pack=None):
    """Write a spectrogram picture per sound into ``output_dir/spectrograms/`` and ``output_dir/index.html``.

    Parameters
    ----------
    output_dir : path-like
    written : dict
        kind -> list of WAV paths inside ``output_dir``, as ``main`` returns it.
    labels : dict
        kind -> list of class names ("" when none), parallel to ``written``.
    settings, params, label_names, morph_strip
        As for ``listening_page_html``.

    Returns
    -------
    pathlib.Path
        The page.
    """
    output_dir = Path(output_dir)
    image_size = settings.get("PAGE_IMAGE_SIZE", IMAGE_SIZE)
    sounds = []
    for kind, paths in written.items():
        kind_labels = labels.get(kind) or [""] * len(paths)
        for path, label in zip(paths, kind_labels):
            sounds.append({"kind": kind, "name": path.stem, "label": label or "", "wav": path.relative_to(output_dir),
                           "png": Path("spectrograms") / kind / (path.stem + ".png")})
    write_spectrogram_pngs([output_dir / sound["wav"] for sound in sounds],
                           [output_dir / sound["png"] for sound in sounds], params, image_size)
    if pack:
        pack = {"sfz": Path(pack["sfz"]).relative_to(output_dir), "dspreset": Path(pack["dspreset"]).relative_to(output_dir),
                "keys": pack["keys"], "samples": {label: [Path(path).relative_to(output_dir) for path in paths]
                                                  for label, paths in pack["samples"].items()}}
    page = listening_page_html(sounds, settings, params, label_names, morph_strip, pack)

    def write(tmp_name):
        Path(tmp_name).write_text(page, encoding="utf-8")

    return atomic_write(output_dir / "index.html", write)
