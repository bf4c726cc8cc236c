"""The sample pack: General MIDI keys, an SFZ file a published linter accepts, a Decent Sampler preset."""

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundkit.sample_pack import OTHER_KEYS, drum_keys, write_sample_pack

sfzlint_parser = pytest.importorskip("sfzlint.parser", reason="sfzlint (requirements.txt) is not installed")


def lint(path):
    """sfzlint's warnings and errors for an SFZ file: [(severity, message)]."""
    problems = []
    sfzlint_parser.validate(Path(path), err_cb=lambda severity, message, token, file: problems.append(
        (severity, message)), config=sfzlint_parser.SFZValidatorConfig(file_path=Path(path), check_includes=False))
    return problems


def regions(path):
    """Every <region> of an SFZ file as parsed by sfzlint, with its group's and control's opcodes merged in."""
    tree = sfzlint_parser.parser().parse(Path(path).read_text(encoding="utf-8") + "\n")
    validator = sfzlint_parser.SFZValidator(config={"file_path": Path(path)})
    validator.transform(tree)
    control, group, found = {}, {}, []
    for header in validator.config.sfz.headers:
        opcodes = {str(name): str(value) for name, value in header.items()}
        kind = str(header.token).strip("<>")
        if kind == "control":
            control = opcodes
        elif kind == "group":
            group = opcodes
        elif kind == "region":
            found.append({**control, **group, **opcodes})
    return found


def write_sounds(folder, classes, per_class):
    sounds = []
    for label in classes:
        for index in range(per_class):
            path = Path(folder) / f"{label}_{index}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.random.default_rng(index).standard_normal(800) * 0.1, 8000, subtype="PCM_24")
            sounds.append((path, label))
    return sounds


def test_drum_names_get_their_general_midi_keys():
    assert drum_keys(["kick", "snare", "clap", "closed hihat", "open hihat", "crash", "ride"]) == {
        "kick": 36, "snare": 38, "clap": 39, "closed hihat": 42, "open hihat": 46, "crash": 49, "ride": 51}
    assert drum_keys(["Kick_Drum", "SD"]) == {"Kick_Drum": 36, "SD": 38}


def test_toms_share_out_the_tom_keys_from_low_to_high_and_one_tom_takes_the_middle():
    assert drum_keys(["tom"]) == {"tom": 45}
    assert list(drum_keys(["tom1", "tom2", "tom3"]).values()) == [41, 45, 50]


def test_classes_the_map_does_not_name_get_keys_of_their_own_from_the_documented_range():
    keys = drum_keys(["zap", "kick", "whoosh", "sound"])
    assert keys["kick"] == 36
    assert [keys["zap"], keys["whoosh"], keys["sound"]] == list(OTHER_KEYS[:3]) == [60, 61, 62]
    assert len(set(drum_keys(["kick", "bd", "kick 2"]).values())) == 3  # never two classes on one key


def test_the_sfz_passes_sfzlint_and_every_region_has_its_sample_and_its_classes_key(tmp_path):
    sounds = write_sounds(tmp_path / "sounds", ["kick", "snare", "hihat", "tom", "zap"], per_class=3)
    pack = write_sample_pack(tmp_path / "pack", sounds, "my kit")
    assert pack["sfz"].name == "my_kit.sfz" and lint(pack["sfz"]) == []
    found = regions(pack["sfz"])
    assert len(found) == 15
    expected = {"kick": 36, "snare": 38, "hihat": 42, "tom": 45, "zap": 60}
    for region in found:
        sample = tmp_path / "pack" / region["default_path"] / region["sample"]
        assert sample.is_file() and sf.info(sample).frames == 800
        assert int(region["key"]) == expected[region["sample"].rsplit("_", 1)[0]]
        assert region["loop_mode"] == "one_shot"
    # Three sounds of a class share its key and split the random range between them.
    snares = [region for region in found if region["sample"].startswith("snare")]
    ranges = [value for region in snares for value in (float(region["lorand"]), float(region["hirand"]))]
    assert ranges == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1], abs=1e-4)
    assert sorted(path.name for path in (tmp_path / "pack" / "samples").iterdir()) == sorted(
        f"{label}_{number:02d}.wav" for label in expected for number in (1, 2, 3))


def test_the_linter_notices_a_missing_sample(tmp_path):
    pack = write_sample_pack(tmp_path / "pack", write_sounds(tmp_path / "sounds", ["kick"], 2))
    (tmp_path / "pack" / "samples" / "kick_02.wav").unlink()
    problems = lint(pack["sfz"])
    assert len(problems) == 1 and "file not found" in problems[0][1] and "kick_02.wav" in problems[0][1]


def test_an_open_hihat_is_choked_by_the_closed_one_in_both_formats(tmp_path):
    pack = write_sample_pack(tmp_path / "pack", write_sounds(tmp_path / "sounds", ["closed_hihat", "open_hihat"], 2))
    assert lint(pack["sfz"]) == []
    by_key = {int(region["key"]): region for region in regions(pack["sfz"])}
    assert by_key[42]["group"] == "1" and "off_by" not in by_key[42]
    assert by_key[46]["group"] == "2" and by_key[46]["off_by"] == "1"
    groups = {group.get("name"): group for group in ElementTree.parse(pack["dspreset"]).getroot().iter("group")}
    assert groups["open_hihat"].get("silencedByTags") == groups["closed_hihat"].get("tags") == "closed_hihat"
    # Without both kinds nothing is choked.
    single = write_sample_pack(tmp_path / "single", write_sounds(tmp_path / "one", ["hihat"], 2))
    assert all("group" not in region for region in regions(single["sfz"]))


def test_the_dspreset_is_valid_xml_whose_samples_exist_on_their_keys_in_random_round_robin(tmp_path):
    sounds = write_sounds(tmp_path / "sounds", ["kick", "snare", "zap"], per_class=4)
    pack = write_sample_pack(tmp_path / "pack", sounds)
    root = ElementTree.parse(pack["dspreset"]).getroot()
    assert root.tag == "DecentSampler" and len(root.findall("groups")) == 1
    keys = {"kick": 36, "snare": 38, "zap": 60}
    groups = root.find("groups").findall("group")
    assert [group.get("name") for group in groups] == ["kick", "snare", "zap"]
    for group in groups:
        assert group.get("seqMode") == "random"
        samples = group.findall("sample")
        assert [int(sample.get("seqPosition")) for sample in samples] == [1, 2, 3, 4]
        for sample in samples:
            assert (pack["dspreset"].parent / sample.get("path")).is_file()
            notes = {int(sample.get(name)) for name in ("rootNote", "loNote", "hiNote")}
            assert notes == {keys[group.get("name")]} and all(1 <= note <= 127 for note in notes)
            assert sample.get("loopEnabled") == "false"


def test_a_new_pack_replaces_the_samples_of_the_old_one(tmp_path):
    write_sample_pack(tmp_path / "pack", write_sounds(tmp_path / "a", ["kick"], 5))
    pack = write_sample_pack(tmp_path / "pack", write_sounds(tmp_path / "b", ["snare"], 2))
    assert sorted(path.name for path in (tmp_path / "pack" / "samples").iterdir()) == ["snare_01.wav", "snare_02.wav"]
    assert lint(pack["sfz"]) == []
