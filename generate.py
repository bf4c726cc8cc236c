"""Step 3: write new sounds, and reconstructions of dataset clips, as WAV files.

Into OUTPUT_DIR:
- ``generated/``: NUM_GENERATED brand-new sounds decoded from the prior (for an
  unconditional model, by default the Gaussians train.py fitted to where its
  training clips lie in the latent space, one per class when clips had labels);
- ``original/`` and ``reconstructed/``: NUM_RECONSTRUCTED held-out clips and what
  the model makes of them (the original is the clip's own spectrogram through
  the same phase reconstruction, so the difference you hear is the model's).
- ``morph/``: when MORPH_FROM and MORPH_TO are both set, MORPH_STEPS sounds that
  walk through the latent space from one to the other (``morph_00.wav`` ...),
  and ``morph_strip.png``, their spectrograms in order;
- ``index.html``: a listening page to open in any browser (no server, no
  internet): a player and a spectrogram picture (from ``spectrograms/``) for
  every sound written, originals beside their reconstructions, and the settings.

All spectrogram parameters come from MODEL_DIR; nothing is typed twice.
Run ``python generate.py --help`` to list the settings.
"""

from pathlib import Path

import matplotlib
import numpy as np

from soundgenerator import DEFAULT_FLOOR_GATE_DB, WAV_SUBTYPES, SoundGenerator, write_wavs
from soundkit import listening_page
from soundkit.configurator import configure, run_script
from soundkit.describe import DescriptionError, as_settings, describe
from soundkit.errors import PipelineError
from soundkit.fileio import safe_name, write_json
from soundkit.fitted import fit_latent_prior_if_missing
from soundkit.folders import check_same_parameters, clip_label_indices, load_model_folder, load_spectrograms
from soundkit.latent_space import KERNEL_WIDTH as DEFAULT_KERNEL_WIDTH, SPREAD_CAP as DEFAULT_SPREAD_CAP
from soundkit.phase import DEFAULT_MOMENTUM, DEFAULT_N_ITER, DEFAULT_PHASE_METHOD, check_phase_config
from soundkit.plots import FIGURE_STYLE, save_figure, spectrogram_grid
from soundkit.sample_pack import write_sample_pack
from soundkit.sounds import knob_shift, morph, morph_end, resolve_labels, similar_clips, variations_of
from soundkit.spectrogram import OFFERED_KNOBS, MinMaxNormaliser

MODEL_DIR = "models/vae"
SPECTROGRAMS_DIR = "data/spectrograms"  # source of the clips to reconstruct
OUTPUT_DIR = "samples"
# what to write
NUM_GENERATED = 10
NUM_RECONSTRUCTED = 5
LABEL = ""                              # models that know classes: the class to generate ("" = every class)
DESCRIBE = ""                           # in words, e.g. "short bright snare": sets LABEL and the knobs it names
TEMPERATURE = 1.0                       # spread of the prior samples; lower = safer, less varied
PRIOR = "fitted"                        # unconditional models: "fitted" (latent_prior.json) or "standard" N(0, I)
KERNEL_WIDTH = DEFAULT_KERNEL_WIDTH     # fitted prior: near a training clip, moved by this x the spread within a
                                        # class; 0 = each class's Gaussian (soundkit/latent_space.py, LatentPrior)
SPREAD_CAP = DEFAULT_SPREAD_CAP         # ... a spread at most this x its class's median one (0: no cap)
SEED = 0
# phase reconstruction
PHASE_METHOD = DEFAULT_PHASE_METHOD     # "griffinlim" or "zero_phase" (the tutorial's, for comparison)
GRIFFIN_LIM_ITERATIONS = DEFAULT_N_ITER
GRIFFIN_LIM_MOMENTUM = DEFAULT_MOMENTUM
FLOOR_GATE_DB = DEFAULT_FLOOR_GATE_DB   # each sound's floor is silenced, ramped in over this many dB; 0 = off
# the WAV files: ready for a sampler
PEAK_DBFS = -1.0                        # every sound is normalised to this peak (dBFS)
NORMALIZE = True                        # False: only sounds louder than PEAK_DBFS are turned down
BIT_DEPTH = 24                          # 16 or 24-bit PCM, or 32 (float)
TRIM_DB = -60.0                         # trailing audio this far below the peak is trimmed
END_FADE = 0.01                         # seconds of fade at the end, so no sound ends with a click
# variations of one sound: NUM_GENERATED new sounds near it, instead of sounds from the prior
VARIATIONS_OF = ""                      # an audio file ("" = none)
VARIATION_SPREAD = 0.5                  # how far they stray, in posterior standard deviations; 0 = its reconstruction
# your library: the clips of SPECTROGRAMS_DIR nearest an audio file, listed with distances (similar.json)
SIMILAR_TO = ""                         # an audio file ("" = none)
NUM_SIMILAR = 10
# knobs: turn the new sounds, in standard deviations of the training clips (directions fitted to them)
BRIGHTNESS = 0.0                        # spectral centroid (-1 darker, +1 brighter)
LENGTH = 0.0                            # time from the attack to -60 dB (-1 shorter, +1 longer)
ATTACK = 0.0                            # how far the first 20 ms stand out (-1 softer, +1 sharper)
PITCH = 0.0                             # where the energy below 1 kHz lies: the tuning of kicks and toms
# sample pack (pack/): the new sounds named by class, an .sfz and a Decent Sampler .dspreset on General MIDI keys
PACK = True
PACK_NAME = "generated_kit"             # file name of the .sfz and .dspreset
# morphing: both set = a morph from one to the other
MORPH_FROM = ""                         # an audio file, or a class name of the model
MORPH_TO = ""
MORPH_STEPS = 8                         # sounds in the morph, both ends included
MORPH_INTERPOLATION = "slerp"           # "linear" or "slerp" (along the sphere, as prior samples lie)
# listening page (index.html)
PAGE_IMAGE_SIZE = list(listening_page.IMAGE_SIZE)  # pixels (width, height) of each sound's picture


def plot_morph_strip(result, params, title, columns=8):
    """The decoded spectrograms of a morph in order, time in seconds and frequency in Hz.

    Returns
    -------
    matplotlib.figure.Figure
    """
    spectrograms_db = MinMaxNormaliser().denormalise(result.spectrograms[..., 0], result.min_db, result.max_db)
    titles = [f"step {index}" for index in range(len(spectrograms_db))]
    with matplotlib.rc_context(FIGURE_STYLE):
        return spectrogram_grid(list(spectrograms_db), titles, params, columns=min(columns, len(titles)),
                                vmin=float(result.min_db.min()), vmax=float(result.max_db.max()),
                                colour_bar_label="dB", suptitle=title, panel_size=(2.3, 1.7))


# --- the stages ------------------------------------------------------------------------

def knob_settings(config):
    """{knob: standard deviations} of the knob settings (BRIGHTNESS, LENGTH, ...)."""
    return {name: getattr(config, name.upper()) for name in OFFERED_KNOBS}


def apply_description(config, model):
    """Set LABEL and the knobs DESCRIBE names (soundkit/describe.py), and print the choice as settings to reuse."""
    try:
        chosen = describe(config.DESCRIBE, model.classes)
    except DescriptionError as error:
        raise PipelineError(f"--describe: {error}") from None
    config.LABEL = chosen.label or config.LABEL
    for name, amount in chosen.knobs.items():
        setattr(config, name.upper(), amount)
    print(f"{config.DESCRIBE!r} means: {as_settings(config.LABEL, knob_settings(config)) or '(no class, no knob)'}")


def generate_new(config, model, sound_generator):
    """Write NUM_GENERATED sounds from the prior into OUTPUT_DIR/generated/; return (paths, class names)."""
    vae, training = model.vae, model.training
    prior = None
    if config.PRIOR == "fitted" and not vae.num_classes:
        prior = fit_latent_prior_if_missing(model, config.SPECTROGRAMS_DIR)
    if prior is not None:
        prior.kernel_width, prior.spread_cap = config.KERNEL_WIDTH, config.SPREAD_CAP
    class_names = model.decoder_classes or (prior.classes if prior else [])
    if config.LABEL and not class_names and training["classes"]:
        raise PipelineError(f"--label={config.LABEL}: this model draws the sounds of one class from its fitted "
                            f"latent prior, which cannot be used here (PRIOR={config.PRIOR}"
                            f"{'' if config.PRIOR == 'standard' else ', see the note above'}). Use --prior=fitted "
                            f"with the latent_prior.json that train.py wrote beside this model.keras.")
    label_indices, label_texts = resolve_labels(config.LABEL, class_names, config.NUM_GENERATED)
    spectrograms, latents = vae.sample(config.NUM_GENERATED, label_indices, seed=config.SEED,
                                       temperature=config.TEMPERATURE, prior=prior)
    shift = knob_shift(knob_settings(config), model, config.SPECTROGRAMS_DIR, label_texts)
    if shift is not None:
        spectrograms = vae.decode(latents + shift, label_indices if vae.num_classes else None)
    level = training["generation_level_db"]
    signals = sound_generator.convert_spectrograms_to_audio(spectrograms, level["min"], level["max"])
    names = [f"{'_'.join(filter(None, ['generated', text]))}_{index:03d}" for index, text in enumerate(label_texts)]
    return (write_wavs(signals, names, Path(config.OUTPUT_DIR) / "generated", model.params["sample_rate"], config),
            label_texts)


def generate_variations(config, model, sound_generator):
    """Write NUM_GENERATED variations of VARIATIONS_OF into OUTPUT_DIR/variations/; return (paths, class names)."""
    spectrograms, min_db, max_db, class_name = variations_of(
        config.VARIATIONS_OF, model, config.NUM_GENERATED, config.VARIATION_SPREAD, config.SEED,
        knob_settings(config), config.SPECTROGRAMS_DIR)
    signals = sound_generator.convert_spectrograms_to_audio(spectrograms, min_db, max_db)
    stem = safe_name(Path(config.VARIATIONS_OF).stem)
    names = [f"{stem}_variation_{index:03d}" for index in range(config.NUM_GENERATED)]
    paths = write_wavs(signals, names, Path(config.OUTPUT_DIR) / "variations", model.params["sample_rate"], config)
    return paths, [class_name] * config.NUM_GENERATED


def generate_reconstructions(config, model, sound_generator):
    """Write NUM_RECONSTRUCTED held-out clips and the model's reconstructions of them into OUTPUT_DIR/original/
    and OUTPUT_DIR/reconstructed/; return ({kind: paths}, their class names)."""
    data, clips, data_params = load_spectrograms(config.SPECTROGRAMS_DIR)
    check_same_parameters(model.params, data_params, config.SPECTROGRAMS_DIR)
    held_out = set(model.training.get("validation_ids", []))
    candidates = [i for i, clip in enumerate(clips) if clip["id"] in held_out] or list(range(len(clips)))
    rng = np.random.default_rng(config.SEED)
    chosen = np.sort(rng.choice(candidates, size=min(config.NUM_RECONSTRUCTED, len(candidates)), replace=False))
    originals = np.asarray(data[chosen])
    reconstructions, _ = model.vae.reconstruct(originals,
                                               clip_label_indices([clips[i] for i in chosen], model.decoder_classes))
    minima = np.array([clips[i]["min"] for i in chosen])
    maxima = np.array([clips[i]["max"] for i in chosen])
    names = [clips[i]["id"].rsplit(".", 1)[0] for i in chosen]
    paths = {}
    for kind, spectrograms in (("original", originals), ("reconstructed", reconstructions)):
        signals = sound_generator.convert_spectrograms_to_audio(spectrograms, minima, maxima)
        paths[kind] = write_wavs(signals, names, Path(config.OUTPUT_DIR) / kind, model.params["sample_rate"], config)
    return paths, [clips[i].get("label") or "" for i in chosen]


def generate_morph(config, model, sound_generator, ends):
    """Write the MORPH_STEPS sounds from one end to the other into OUTPUT_DIR/morph/, with their strip of
    spectrograms; return (paths, the strip's path relative to OUTPUT_DIR)."""
    start, end = ends
    result = morph(model.vae, start, end, config.MORPH_STEPS, config.MORPH_INTERPOLATION)
    signals = sound_generator.convert_spectrograms_to_audio(result.spectrograms, result.min_db, result.max_db)
    morph_dir = Path(config.OUTPUT_DIR) / "morph"
    for stale in morph_dir.glob("morph_*.wav"):  # a longer morph of an earlier run
        stale.unlink()
    digits = max(2, len(str(config.MORPH_STEPS - 1)))
    paths = write_wavs(signals, [f"morph_{index:0{digits}d}" for index in range(config.MORPH_STEPS)],
                       morph_dir, model.params["sample_rate"], config)
    title = (f"Morph from {start.name} to {end.name}: {config.MORPH_STEPS} steps, "
             f"{config.MORPH_INTERPOLATION} interpolation")
    strip = save_figure(plot_morph_strip(result, model.params, title), morph_dir / "morph_strip.png")
    return paths, strip.relative_to(Path(config.OUTPUT_DIR))


def list_similar(config, model):
    """Print and save (OUTPUT_DIR/similar.json) the NUM_SIMILAR clips nearest SIMILAR_TO."""
    similar = similar_clips(config.SIMILAR_TO, model, config.SPECTROGRAMS_DIR, config.NUM_SIMILAR)
    write_json(Path(config.OUTPUT_DIR) / "similar.json", {"to": str(config.SIMILAR_TO), "clips": similar})
    print(f"the {len(similar)} clips of {config.SPECTROGRAMS_DIR} nearest {config.SIMILAR_TO} (latent distance):")
    for clip in similar:
        print(f"  {clip['distance']:8.3f}  {clip['file']}" + (f"  ({clip['label']})" if clip["label"] else ""))


def write_pack_and_page(config, model, written, labels, morph_strip):
    """The sample pack of the new sounds, the listening page and generation.json; return the page's path."""
    output_dir, params = Path(config.OUTPUT_DIR), model.params
    pack = None
    new_sounds = [(path, label) for kind in ("generated", "variations")
                  for path, label in zip(written[kind], labels[kind])]
    if config.PACK and new_sounds:
        pack = write_sample_pack(output_dir / "pack", new_sounds, config.PACK_NAME)
        print(f"sample pack: {pack['sfz']} and {pack['dspreset']} (keys: "
              + ", ".join(f"{label or 'sound'} {key}" for label, key in pack["keys"].items()) + ")")
    page = listening_page.write_listening_page(output_dir, written, labels, vars(config), params,
                                               model.decoder_classes, morph_strip, pack)
    write_json(output_dir / "generation.json", {
        "settings": vars(config),
        "sample_rate": params["sample_rate"],
        "files": {kind: [str(path.relative_to(output_dir)) for path in paths] for kind, paths in written.items()},
    })
    return page


def validate(config):
    """Refuse settings that cannot work, before any model is loaded."""
    if config.NUM_GENERATED < 0 or config.NUM_RECONSTRUCTED < 0:
        raise PipelineError("NUM_GENERATED and NUM_RECONSTRUCTED must be >= 0")
    if config.KERNEL_WIDTH < 0:
        raise PipelineError(f"KERNEL_WIDTH must be 0 (the Gaussians) or more, got {config.KERNEL_WIDTH}")
    if config.SPREAD_CAP < 0:
        raise PipelineError(f"SPREAD_CAP must be 0 (no cap) or more, got {config.SPREAD_CAP}")
    if config.PRIOR not in ("fitted", "standard"):
        raise PipelineError(f"PRIOR must be 'fitted' or 'standard', got {config.PRIOR!r}")
    if bool(config.MORPH_FROM) != bool(config.MORPH_TO):
        raise PipelineError("a morph needs both MORPH_FROM and MORPH_TO (an audio file or a class name each)")
    if config.MORPH_STEPS < 2:
        raise PipelineError(f"MORPH_STEPS must be at least 2 (both ends), got {config.MORPH_STEPS}")
    if config.MORPH_INTERPOLATION not in ("linear", "slerp"):
        raise PipelineError(f"MORPH_INTERPOLATION must be 'linear' or 'slerp', got {config.MORPH_INTERPOLATION!r}")
    check_phase_config(config)
    for name in OFFERED_KNOBS:
        if not -3 <= getattr(config, name.upper()) <= 3:
            raise PipelineError(f"{name.upper()} must be between -3 and +3 (standard deviations of the training "
                                f"clips), got {getattr(config, name.upper())}")
    if config.VARIATION_SPREAD < 0:
        raise PipelineError(f"VARIATION_SPREAD must be 0 or more (posterior standard deviations), "
                            f"got {config.VARIATION_SPREAD}")
    for name in ("VARIATIONS_OF", "SIMILAR_TO"):
        if getattr(config, name) and not Path(getattr(config, name)).is_file():
            raise PipelineError(f"{name}: no audio file at {getattr(config, name)}")
    if config.NUM_SIMILAR < 1:
        raise PipelineError(f"NUM_SIMILAR must be at least 1, got {config.NUM_SIMILAR}")
    if not 0 <= config.FLOOR_GATE_DB <= 40:
        raise PipelineError(f"FLOOR_GATE_DB must be from 0 (off) to 40 dB, got {config.FLOOR_GATE_DB}")
    if config.BIT_DEPTH not in WAV_SUBTYPES:
        raise PipelineError(f"BIT_DEPTH must be 16, 24 or 32 (float), got {config.BIT_DEPTH}")
    if not (config.PEAK_DBFS <= 0 and config.TRIM_DB < 0 and config.END_FADE >= 0):
        raise PipelineError(f"PEAK_DBFS must be <= 0 dBFS, TRIM_DB below 0 dB and END_FADE >= 0 s; got "
                            f"{config.PEAK_DBFS}, {config.TRIM_DB} and {config.END_FADE}")
    size = config.PAGE_IMAGE_SIZE
    if len(size) != 2 or not all(isinstance(pixels, int) and 100 <= pixels <= 2000 for pixels in size):
        raise PipelineError(f"PAGE_IMAGE_SIZE must be [width, height] in pixels, each 100 to 2000, got {size!r}")


def main(argv=None):
    config = configure(globals(), argv)
    validate(config)
    model = load_model_folder(config.MODEL_DIR)
    if config.DESCRIBE:
        apply_description(config, model)
    sound_generator = SoundGenerator.from_params(model.params, phase_method=config.PHASE_METHOD,
                                                 n_iter=config.GRIFFIN_LIM_ITERATIONS,
                                                 momentum=config.GRIFFIN_LIM_MOMENTUM,
                                                 floor_gate_db=config.FLOOR_GATE_DB)
    written = {"generated": [], "variations": [], "original": [], "reconstructed": [], "morph": []}
    labels = {kind: [] for kind in written}
    # The ends of a morph first: a typo is reported before minutes of work.
    morph_ends = None
    if config.MORPH_FROM:
        morph_ends = tuple(morph_end(text, name, model, config.SPECTROGRAMS_DIR)
                           for text, name in ((config.MORPH_FROM, "MORPH_FROM"), (config.MORPH_TO, "MORPH_TO")))
    if config.SIMILAR_TO:
        list_similar(config, model)
    # Brand-new sounds: from the prior, given the training set's typical level, or near one sound.
    if config.NUM_GENERATED and config.VARIATIONS_OF:
        written["variations"], labels["variations"] = generate_variations(config, model, sound_generator)
    elif config.NUM_GENERATED:
        written["generated"], labels["generated"] = generate_new(config, model, sound_generator)
    if config.NUM_RECONSTRUCTED:
        paths, clip_labels = generate_reconstructions(config, model, sound_generator)
        for kind in paths:
            written[kind], labels[kind] = paths[kind], clip_labels
    morph_strip = None
    if morph_ends:
        written["morph"], morph_strip = generate_morph(config, model, sound_generator, morph_ends)
    page = write_pack_and_page(config, model, written, labels, morph_strip)
    total = sum(len(paths) for paths in written.values())
    print(f"wrote {total} WAV files at {model.params['sample_rate']} Hz to {config.OUTPUT_DIR}/ "
          f"({len(written['generated']) + len(written['variations'])} new, {len(written['reconstructed'])} reconstructed "
          f"with their originals, {len(written['morph'])} morph steps)")
    print(f"listen to them all on {page}")
    return written


if __name__ == "__main__":
    run_script(main)
