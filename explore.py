"""Explore a trained model live: turn knobs, hear each new sound at once, keep the good ones.

    python explore.py                       # then open the address it prints
    python explore.py --model_dir=models/kit --port=8080

Serves one page on 127.0.0.1 (this computer only). Every change on the page asks
for a sound: the model decodes a latent vector (a fresh draw from the prior, a
variation of the current sound, or a point of a morph between two kept ones),
moved by the knobs (brightness, length, attack, pitch) and along the two main
directions of the latent space; the phase is reconstructed (quickly:
PREVIEW_ITERATIONS) and the WAV comes back with its spectrogram. "Keep" writes
the current sound, made again at full quality, as a 24-bit WAV into KEEP_DIR
(whole under a temporary name, then renamed); "Export pack" turns the kept
sounds into a sample pack there. Ctrl-C stops it.

Below, a step sequencer (soundkit/sequencer.js) plays a row per class or per
chosen sound in a loop; "Bounce" renders bars of it in the browser and sends
them here, written into KEEP_DIR/loops/ as a 24-bit WAV with the pattern beside
it as a MIDI file (soundkit/pattern.py). A text box turns a description ("short
bright snare") into a class and knob settings (soundkit/describe.py).

The address it prints holds a token made afresh for each run,
http://127.0.0.1:PORT/?token=...; the page reads it from its own address and
sends it with every request (header X-Explorer-Token), so no other web page open
in the browser can drive the explorer. The server also refuses a foreign Host or
Origin, API bodies that are not application/json, a request that does not arrive
whole within REQUEST_SECONDS, and more than MAX_CONNECTIONS connections at once
(soundkit/http_guard.py says why each).

The standard library's HTTP server is enough here: one user, on loopback, a few
requests a second (see the README for why no web framework).
"""

import base64
import io
import itertools
import json
import threading
from collections import OrderedDict
from http import HTTPStatus
from pathlib import Path
from typing import Final

import matplotlib
import numpy as np
import PIL.Image
import soundfile as sf

from soundkit.configurator import configure, run_script
from soundkit.describe import DescriptionError, describe
from soundkit.errors import PipelineError
from soundkit.fileio import atomic_write_all, json_writer, safe_name
from soundkit.fitted import fit_knobs_if_missing, fit_latent_prior_if_missing
from soundkit.folders import load_model_folder, load_spectrograms
from soundkit.http_guard import GuardedHandler, GuardedServer, Refusal, shown
from soundkit.latent_space import interpolate_latents, latent_pca
from soundkit import pattern
from soundkit.phase import DEFAULT_N_ITER
from soundkit.sample_pack import drum_keys, write_sample_pack
from soundgenerator import SoundGenerator, finish_for_sampler, full_range
from soundkit.spectrogram import OFFERED_KNOBS

# I/O
MODEL_DIR = "models/vae"
SPECTROGRAMS_DIR = "data/spectrograms"  # the training clips: for the knobs and the main directions
KEEP_DIR = "samples/kept"               # where "Keep" writes; nothing is written anywhere else
PORT = 8000                             # 0 = any free port
# sound
PREVIEW_ITERATIONS = 12                 # Griffin-Lim iterations of what you hear while exploring (fast)
GRIFFIN_LIM_ITERATIONS = DEFAULT_N_ITER  # ... and of a kept sound, made again at full quality
PEAK_DBFS = -1.0
SEED = 0
# limits
MAX_BODY_BYTES = 4096                   # a request is a few settings: anything larger is refused
MAX_BOUNCE_BYTES = 16 << 20             # ... but a bounce carries its audio (8 bars at 60 BPM, 44.1 kHz: 11 MB)
REQUEST_SECONDS = 20.0                  # a request must arrive whole (line, headers, body) within this time
MAX_CONNECTIONS = 16                    # connections open at once; one more is answered 503 at once
REMEMBERED_SOUNDS = 200                 # recent sounds the page can keep or vary

HOST: Final = "127.0.0.1"
PAGE_DIR: Final = Path(__file__).parent / "soundkit"  # explore.html and sequencer.js
DIRECTIONS: Final = ("direction_1", "direction_2")  # the two main (PCA) directions of the training clips
LIMIT: Final = 3.0                      # knobs and directions, in standard deviations
SOUND_FIELDS: Final = ("mode", "class", "seed", "temperature", "knobs", "directions", "spread", "of", "a", "b", "t")
KEEP_FIELDS: Final = ("id", "name")
BOUNCE_FIELDS: Final = ("bpm", "swing", "accent_db", "bars", "rows", "audio", "name")
LOOPS_DIR: Final = "loops"              # bounces go to KEEP_DIR/loops/, so that "Export pack" takes one-shots only
NO_CLASS: Final = "sound"               # the name (and key) of a sound without a class, as in the sample pack
MAX_DESCRIPTION: Final = 200            # characters of a description


class RequestError(ValueError):
    """A request that cannot be served, with the reason for the page."""


class SoundExplorer:
    """Makes sounds for the page: draws and moves latent vectors, decodes them, remembers and keeps them."""

    def __init__(self, config):
        self.config = config
        model = load_model_folder(config.MODEL_DIR)
        self.vae, self.params, self.training = model.vae, model.params, model.training
        self.classes = model.decoder_classes
        self.prior = None if self.vae.num_classes else fit_latent_prior_if_missing(model, config.SPECTROGRAMS_DIR)
        if self.prior is not None:
            self.classes = self.prior.classes
        data, clips, _ = load_spectrograms(config.SPECTROGRAMS_DIR)
        self.knobs = fit_knobs_if_missing(model, config.SPECTROGRAMS_DIR)
        self.keys = drum_keys([*self.classes, NO_CLASS])  # a MIDI key per class, as the sample pack maps them
        rows = np.linspace(0, len(clips) - 1, min(len(clips), 2000)).astype(int)
        labels = None
        if self.vae.num_classes:
            labels = np.array([self.classes.index(clips[i]["label"]) for i in rows])
        means = self.vae.encode_rows(data, rows, labels)
        projected, components, _ = latent_pca(means)
        self.directions = components * projected.std(axis=0)[:, None]  # one step = one standard deviation
        self.latent_std = means.std(axis=0)
        self.preview = SoundGenerator.from_params(self.params, n_iter=config.PREVIEW_ITERATIONS)
        self.generator = SoundGenerator.from_params(self.params, n_iter=config.GRIFFIN_LIM_ITERATIONS)
        self.level = self.training["generation_level_db"]
        self.lock = threading.Lock()  # one sound at a time: the model and the memory below are shared
        self.sounds = OrderedDict()    # id -> {"latent", "label", "class", "wav"}
        self.counter = itertools.count(1)

    def info(self):
        """What the page offers: classes, knobs, directions, their range, the sound's rate and length, the MIDI
        key of each class and the sequencer's ranges."""
        return {"classes": list(self.classes), "knobs": list(OFFERED_KNOBS), "directions": list(DIRECTIONS),
                "limit": LIMIT, "sample_rate": self.params["sample_rate"], "seconds": self.params["duration"],
                "model_dir": str(self.config.MODEL_DIR), "keys": self.keys, "no_class": NO_CLASS,
                "sequencer": {"steps": pattern.STEPS, "bpm": pattern.BPM_RANGE, "swing": pattern.SWING_RANGE,
                              "accent_db": pattern.ACCENT_RANGE, "max_bars": pattern.MAX_BARS,
                              "max_rows": pattern.MAX_ROWS, "velocity_exponent": pattern.VELOCITY_EXPONENT}}

    def _number(self, request, name, low, high, default):
        value = request.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise RequestError(f"{name} must be a number from {low} to {high}, got {shown(value)}")
        return float(value)

    def _settings(self, request, group, names):
        settings = request.get(group, {})
        if not isinstance(settings, dict) or set(settings) - set(names):
            raise RequestError(f"{group} must be an object with some of {list(names)}, got {shown(settings)}")
        return {name: self._number(settings, name, -LIMIT, LIMIT, 0.0) for name in names}

    def _remembered(self, request, name):
        sound_id = request.get(name)
        sound = self.sounds.get(sound_id) if isinstance(sound_id, str) else None
        if sound is None:
            raise RequestError(f"{name}: no recent sound {shown(sound_id)} (make one first)")
        return sound

    def make(self, request):
        """Decode the sound a request describes; returns its id, WAV (base64), spectrogram (PNG, base64)."""
        object_with(request, SOUND_FIELDS)
        mode = request.get("mode", "new")
        if mode not in ("new", "variation", "morph"):
            raise RequestError(f"mode must be new, variation or morph, got {shown(mode)}")
        knobs = self._settings(request, "knobs", OFFERED_KNOBS)
        directions = self._settings(request, "directions", DIRECTIONS)
        name = request.get("class", "")
        if not isinstance(name, str) or name and name not in self.classes:
            raise RequestError(f"unknown class {shown(name)}; this model knows: {', '.join(self.classes) or 'none'}")
        with self.lock:  # one decoding at a time: TensorFlow already spreads one over both cores
            latent, label, name = self._latent(request, mode, name)
            moved = latent + self.knobs.shift(knobs, name) + np.array([directions[d] for d in DIRECTIONS]) @ \
                self.directions[:len(DIRECTIONS)]
            labels = None if label is None or not self.vae.num_classes else [label]
            spectrogram = full_range(self.vae.decode_now(moved[None], labels))
        # The phase reconstruction runs outside the lock, so two requests can use both cores.
        wav = self._wav(spectrogram, self.preview)
        with self.lock:
            sound_id = f"s{next(self.counter)}"
            self.sounds[sound_id] = {"latent": latent, "label": label, "class": name, "spectrogram": spectrogram}
            while len(self.sounds) > self.config.REMEMBERED_SOUNDS:
                self.sounds.popitem(last=False)
        return {"id": sound_id, "class": name, "wav": base64.b64encode(wav).decode(),
                "png": base64.b64encode(picture(spectrogram[0, ..., 0])).decode(),
                "sample_rate": self.params["sample_rate"]}

    def _wav(self, spectrogram, generator):
        """A decoded spectrogram as the bytes of a 24-bit WAV file ready for a sampler."""
        signal = generator.convert_spectrograms_to_audio(spectrogram, self.level["min"], self.level["max"])[0]
        wav = io.BytesIO()
        sf.write(wav, finish_for_sampler(signal, self.params["sample_rate"], self.config.PEAK_DBFS),
                 self.params["sample_rate"], format="WAV", subtype="PCM_24")
        return wav.getvalue()

    def _latent(self, request, mode, name):
        """(latent vector before the knobs, class index or None, class name) for a request."""
        if mode == "variation":
            source = self._remembered(request, "of")
            spread = self._number(request, "spread", 0.0, LIMIT, 0.3)
            noise = np.random.default_rng(int(self._number(request, "seed", 0, 2 ** 31, 0))).standard_normal(
                source["latent"].shape)
            # ``spread`` in standard deviations of the training clips' latent means, dimension by dimension
            return source["latent"] + spread * self.latent_std * noise, source["label"], source["class"]
        if mode == "morph":
            start, end = self._remembered(request, "a"), self._remembered(request, "b")
            position = self._number(request, "t", 0.0, 1.0, 0.5)
            path = interpolate_latents(start["latent"], end["latent"], 101, "slerp")
            ends = start if position < 0.5 else end
            return path[int(round(position * 100))], ends["label"], ends["class"]
        temperature = self._number(request, "temperature", 0.1, 2.0, 1.0)
        rng = np.random.default_rng(int(self._number(request, "seed", 0, 2 ** 31, self.config.SEED)))
        label = self.classes.index(name) if name else None
        if self.prior is not None:
            return self.prior.sample(1, None if label is None else [label], rng, temperature)[0], label, name
        latent = rng.standard_normal(self.vae.latent_space_dim) * temperature
        return latent, (label if label is not None else 0) if self.vae.num_classes else None, name

    def keep(self, request):
        """Write a remembered sound into KEEP_DIR under a sanitised name, its phase reconstructed at full
        quality (GRIFFIN_LIM_ITERATIONS); returns the file's name.

        The WAV and its class (a .json beside it) are each written whole under a
        temporary name in KEEP_DIR, then renamed: a crash or a full disk never
        leaves half a file, and "Export pack" never reads one.
        """
        name = object_with(request, KEEP_FIELDS).get("name")
        if name is not None and not isinstance(name, str):
            raise RequestError(f"name must be text, got {shown(name)}")
        sound = self._remembered(request, "id")
        folder = Path(self.config.KEEP_DIR)
        stem = safe_name(name or f"{sound['class'] or 'sound'}_{request['id']}")  # any text, even "\ud800"
        wav = self._wav(sound["spectrogram"], self.generator)
        with self.lock:
            path = free_path(folder, stem, (".wav",))
            # The class first: a kept WAV always has its class beside it.
            atomic_write_all({path.with_suffix(".json"): json_writer({"class": sound["class"]}),
                              path: lambda tmp_name: Path(tmp_name).write_bytes(wav)})
        return {"kept": path.name, "folder": str(folder)}

    def export(self, request):
        """A sample pack of every kept sound, in KEEP_DIR/pack. A sound whose class file is missing or
        damaged goes in without its class; the reply says which and why (``unclassed``)."""
        object_with(request, ())
        folder = Path(self.config.KEEP_DIR)
        with self.lock:  # not while Keep writes
            kept = sorted(path for path in folder.glob("*.wav") if not path.name.startswith(".")) \
                if folder.is_dir() else []
            if not kept:
                raise RequestError("nothing kept yet: press Keep on a sound first")
            classes = {path: kept_class(path.with_suffix(".json")) for path in kept}
            pack = write_sample_pack(folder / "pack", [(path, label) for path, (label, _) in classes.items()],
                                     "explored_kit")
        unclassed = [{"file": path.name, "reason": reason} for path, (_, reason) in classes.items() if reason]
        return {"sfz": str(pack["sfz"]), "dspreset": str(pack["dspreset"]), "sounds": len(kept),
                "unclassed": unclassed}


    def description(self, request):
        """The class and the four knobs a description asks for, and the same as settings to reuse."""
        text = object_with(request, ("text",)).get("text")
        if not isinstance(text, str) or len(text) > MAX_DESCRIPTION:
            raise RequestError(f"text must be a description of at most {MAX_DESCRIPTION} characters, got {shown(text)}")
        try:
            chosen = describe(text, self.classes)
        except DescriptionError as error:
            raise RequestError(str(error)) from None
        return {"class": chosen.label, "knobs": {name: chosen.knobs.get(name, 0.0) for name in OFFERED_KNOBS},
                "settings": chosen.settings}

    def bounce(self, request):
        """Write the bars the page rendered as a 24-bit WAV into KEEP_DIR/loops/, and the pattern beside it as a
        Standard MIDI File on each row's General MIDI key; returns their names. Audio louder than full scale
        (rows adding up) is turned down to PEAK_DBFS as a whole, so the accents keep their levels."""
        object_with(request, BOUNCE_FIELDS)
        name, rate = request.get("name", ""), self.params["sample_rate"]
        if not isinstance(name, str):
            raise RequestError(f"name must be text, got {shown(name)}")
        try:
            loop = pattern.read_pattern(request, [*self.classes, ""])
            audio = pattern.read_audio(request.get("audio"), pattern.loop_samples(loop.bars, loop.bpm, rate))
        except ValueError as error:
            raise RequestError(str(error)) from None
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        gain = min(1.0, 10 ** (self.config.PEAK_DBFS / 20) / peak) if peak > 1.0 else 1.0
        wav = io.BytesIO()
        sf.write(wav, audio * gain, rate, format="WAV", subtype="PCM_24")
        keys = {label: self.keys[label or NO_CLASS] for label, _ in loop.rows}
        stem = safe_name(name or f"loop_{loop.bpm}bpm")
        midi = pattern.midi_file(loop, keys, stem)
        folder = Path(self.config.KEEP_DIR) / LOOPS_DIR
        with self.lock:
            path = free_path(folder, stem, (".wav", ".mid"))
            atomic_write_all({path.with_suffix(".mid"): lambda tmp_name: Path(tmp_name).write_bytes(midi),
                              path: lambda tmp_name: Path(tmp_name).write_bytes(wav.getvalue())})
        return {"wav": path.name, "midi": path.with_suffix(".mid").name, "folder": str(folder),
                "samples": len(audio), "seconds": len(audio) / rate, "turned_down_db": round(-20 * np.log10(gain), 2)}


def free_path(folder, stem, suffixes):
    """``folder/stem`` (with the first suffix), or ``stem_2``, ``stem_3``...: the first that no file of any of the
    ``suffixes`` holds yet, so nothing is ever overwritten."""
    path, number = folder / f"{stem}{suffixes[0]}", 2
    while any(path.with_suffix(suffix).exists() for suffix in suffixes):
        path, number = folder / f"{stem}_{number}{suffixes[0]}", number + 1
    return path


def object_with(request, fields):
    """``request`` if it is a JSON object with some of ``fields``; ``RequestError`` naming what is wrong."""
    if not isinstance(request, dict):
        raise RequestError("the request must be a JSON object")
    unknown = sorted(set(request) - set(fields))
    if unknown:
        raise RequestError(f"unknown field {shown(unknown[0])}; this request takes "
                           f"{', '.join(fields) if fields else 'none'}")
    return request


def kept_class(meta):
    """(class, "") of a kept sound from the .json beside it; ("", the reason) when it is missing or damaged."""
    if not meta.exists():
        return "", f"no {meta.name}"
    try:
        label = json.loads(meta.read_text(encoding="utf-8"))["class"]
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as error:
        return "", f"{meta.name} is damaged ({type(error).__name__}: {str(error)[:80]})"
    if not isinstance(label, str):
        return "", f"{meta.name} is damaged (class {shown(label)} is not text)"
    return label, ""


MAGMA: Final = (matplotlib.colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def picture(spectrogram, rows=128):
    """PNG bytes of a normalised spectrogram (bins, frames): low frequencies at the bottom, magma colours.

    The bins are averaged down to ``rows`` (enough for a 240-pixel picture) and the
    colours looked up in a table: a few milliseconds, where matplotlib's ``imsave``
    of the whole spectrogram took about 70.
    """
    bins = len(spectrogram) - len(spectrogram) % rows if len(spectrogram) > rows else len(spectrogram)
    pooled = spectrogram[:bins].reshape(min(rows, bins), -1, spectrogram.shape[1]).mean(axis=1)
    pixels = MAGMA[np.clip(pooled[::-1] * 255, 0, 255).astype(np.uint8)]
    png = io.BytesIO()
    PIL.Image.fromarray(pixels).save(png, format="PNG", compress_level=1)
    return png.getvalue()


def handler_for(explorer, page):
    """The request handler class, bound to one ``SoundExplorer`` and the page's HTML. The server's guards
    (``GuardedHandler``) have checked Host, Origin, token and Content-Type before ``do_GET``/``do_POST``."""
    actions = {"/api/sound": explorer.make, "/api/keep": explorer.keep, "/api/export": explorer.export,
               "/api/describe": explorer.description, "/api/bounce": explorer.bounce}
    script = (PAGE_DIR / "sequencer.js").read_bytes()

    class ExplorerHandler(GuardedHandler):
        def do_GET(self):
            if self.url_path == "/":
                self.reply(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            elif self.url_path == "/sequencer.js":
                self.reply(HTTPStatus.OK, script, "text/javascript; charset=utf-8")
            elif self.url_path == "/api/model":
                self.reply(HTTPStatus.OK, explorer.info())
            else:
                self.reply(HTTPStatus.NOT_FOUND, {"error": f"no page at {self.url_path[:100]}"})

        def do_POST(self):
            if self.url_path not in actions:
                return self.reply(HTTPStatus.NOT_FOUND, {"error": f"no action at {self.url_path[:100]}"})
            try:
                request = self.read_json(explorer.config.MAX_BOUNCE_BYTES if self.url_path == "/api/bounce"
                                         else explorer.config.MAX_BODY_BYTES)
                answer = actions[self.url_path](request)
            except Refusal as refusal:
                return self.reply(refusal.status, {"error": refusal.message})
            except RequestError as error:
                return self.reply(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            self.reply(HTTPStatus.OK, answer)

    return ExplorerHandler


def serve(config):
    """The running server (not yet serving): bound to 127.0.0.1 and PORT (0: a free one), with a new
    token (``server.token``) that every API call must carry."""
    explorer = SoundExplorer(config)
    return GuardedServer((HOST, config.PORT), handler_for(explorer, page_html()), config.REQUEST_SECONDS,
                         config.MAX_CONNECTIONS)


def page_html():
    """The explorer's page: inline style and script, and the sequencer's script from this server; no fonts or
    files from elsewhere."""
    return (PAGE_DIR / "explore.html").read_text(encoding="utf-8")


def validate(config):
    if not (config.PORT == 0 or 1024 <= config.PORT <= 65535):
        raise PipelineError(f"PORT must be 0 (any free port) or 1024 to 65535, got {config.PORT}")
    if not (1 <= config.PREVIEW_ITERATIONS and 1 <= config.GRIFFIN_LIM_ITERATIONS):
        raise PipelineError("PREVIEW_ITERATIONS and GRIFFIN_LIM_ITERATIONS must be at least 1")
    if (config.MAX_BODY_BYTES < 256 or config.REQUEST_SECONDS <= 0 or config.MAX_CONNECTIONS < 1
            or config.REMEMBERED_SOUNDS < 2 or config.MAX_BOUNCE_BYTES < config.MAX_BODY_BYTES):
        raise PipelineError("MAX_BODY_BYTES must be at least 256, REQUEST_SECONDS positive, MAX_CONNECTIONS "
                            "and REMEMBERED_SOUNDS at least 1 and 2, MAX_BOUNCE_BYTES at least MAX_BODY_BYTES")


def main(argv=None):
    config = configure(globals(), argv)
    validate(config)
    server = serve(config)
    host, port = server.server_address[:2]
    # The token is this run's key: only a page opened at this address can use the explorer.
    print(f"exploring {config.MODEL_DIR}: open http://{host}:{port}/?token={server.token} (Ctrl-C stops); "
          f"kept sounds go to {config.KEEP_DIR}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        server.server_close()


if __name__ == "__main__":
    run_script(main)
