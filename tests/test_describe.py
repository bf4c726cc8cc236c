"""Sounds asked for in words: a description becomes a class and knob settings, or an error naming each word."""

import numpy as np
import pytest
import soundfile as sf

from soundkit.describe import DEGREES, KNOB_WORDS, DescriptionError, describe
from soundkit.errors import PipelineError
from soundkit.spectrogram import OFFERED_KNOBS

KIT = ["hihat", "kick", "snare", "tom"]
GROUPS = ["bright-long", "bright-short", "dark-long", "dark-short"]


@pytest.mark.parametrize("text, label, knobs, settings", [
    ("short bright snare", "snare", {"brightness": 1.0, "length": -1.0}, "--label=snare --brightness=1 --length=-1"),
    ("A bit darker, VERY long tom", "tom", {"brightness": -0.5, "length": 2.0}, "--label=tom --brightness=-0.5 --length=2"),
    ("extremely punchy kicks", "kick", {"attack": 3.0}, "--label=kick --attack=3"),
    ("a low, deep bass drum", "kick", {"pitch": -1.0}, "--label=kick --pitch=-1"),
    ("slightly softer hat", "hihat", {"attack": -0.5}, "--label=hihat --attack=-0.5"),
    ("hi-hat", "hihat", {}, "--label=hihat"),
    ("high hat, tight", "hihat", {"length": -1.0}, "--label=hihat --length=-1"),
    ("high-pitched tom", "tom", {"pitch": 1.0}, "--label=tom --pitch=1"),
    ("short", "", {"length": -1.0}, "--length=-1"),
])
def test_a_description_chooses_a_class_and_knobs_and_prints_them_as_settings(text, label, knobs, settings):
    chosen = describe(text, KIT)
    assert (chosen.label, chosen.knobs, chosen.settings) == (label, knobs, settings)


def test_two_words_for_one_knob_the_same_way_keep_the_stronger_and_a_degree_may_repeat():
    assert describe("short, very tight snare", KIT).knobs == {"length": -2.0}
    assert describe("very very bright snare", KIT).knobs == {"brightness": 2.0}


def test_groups_are_named_like_classes_and_their_words_still_turn_knobs_elsewhere():
    assert describe("a very short dark-long", GROUPS).settings == "--label=dark-long --length=-2"
    assert describe("bright short", GROUPS).settings == "--label=bright-short"
    assert describe("short bright", GROUPS).settings == "--brightness=1 --length=-1"  # not a group's name


@pytest.mark.parametrize("text, message", [
    ("short fat snare", "unknown word 'fat'"),
    ("fat wet snare", "unknown words 'fat', 'wet'"),
    ("bright dark snare", "'bright' and 'dark' turn brightness both ways"),
    ("kick and snare", "it names 2 classes ('kick', 'snare'): pick one"),
    ("very snare", "'very' goes just before a knob word (e.g. 'very bright')"),
    ("short clap", "this model has no clap"),
    ("open hat", "this model has no open hihat ('open hat')"),
])
def test_words_it_cannot_use_are_named_never_dropped(text, message):
    with pytest.raises(DescriptionError, match="cannot read") as error:
        describe(text, KIT)
    assert message in str(error.value)
    assert "words: hihat, kick, snare, tom; bright/dark, long/short, sharp/soft, high/low" in str(error.value)


def test_an_empty_description_asks_for_one():
    for text in ("", "  ", "a sound"):
        with pytest.raises(DescriptionError, match='describe a sound, e.g. "short bright hihat"'):
            describe(text, KIT)


def test_the_vocabulary_covers_every_knob_both_ways_and_stays_within_the_knobs_range():
    assert set(KNOB_WORDS) == set(OFFERED_KNOBS)
    assert all(up and down for up, down in KNOB_WORDS.values())
    assert max(DEGREES.values()) <= 3.0 and min(DEGREES.values()) > 0
    assert describe("extremely dark", KIT).knobs == {"brightness": -3.0}


@pytest.mark.slow
def test_generate_describe_writes_the_sounds_of_the_printed_settings(labelled_project, tmp_path, capsys):
    """The settings printed are the choice: run with them instead, the same sounds come out."""
    import generate

    root = labelled_project[0]
    common = [f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}", "--num_generated=3",
              "--num_reconstructed=0", "--pack=false", "--griffin_lim_iterations=4"]
    described = generate.main([*common, f"--output_dir={tmp_path / 'words'}", "--describe=very short bright snare"])
    printed = capsys.readouterr().out
    assert "'very short bright snare' means: --label=snare --brightness=1 --length=-2\n" in printed
    assert [path.name for path in described["generated"]] == [f"generated_snare_{i:03d}.wav" for i in range(3)]
    again = generate.main([*common, f"--output_dir={tmp_path / 'settings'}", "--label=snare", "--brightness=1",
                           "--length=-2"])
    for first, second in zip(described["generated"], again["generated"], strict=True):
        np.testing.assert_array_equal(sf.read(first)[0], sf.read(second)[0])


@pytest.mark.slow
def test_generate_describe_refuses_an_unknown_word_before_writing_anything(labelled_project, tmp_path):
    import generate

    root = labelled_project[0]
    with pytest.raises(PipelineError, match=r"--describe: cannot read 'short fat snare': unknown word 'fat' "
                                            r"\(words: clap, hihat, kick, snare, tom;"):
        generate.main([f"--model_dir={root / 'model'}", f"--spectrograms_dir={root / 'spectrograms'}",
                       f"--output_dir={tmp_path / 'out'}", "--describe=short fat snare"])
    assert not (tmp_path / "out").exists()
