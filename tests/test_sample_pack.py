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


# --- names from folders are not trusted -------------------------------------------------------------

def distinct_sounds(folder, classes, per_class):
    """``per_class`` WAVs of each class, no two with the same samples, under names that are safe on any disk."""
    sounds, seed = [], 0
    for number, label in enumerate(classes):
        for index in range(per_class):
            seed += 1
            path = Path(folder) / f"class{number}_{index}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.random.default_rng(seed).standard_normal(800) * 0.1, 8000, subtype="PCM_24")
            sounds.append((path, label))
    return sounds


def tree_contents(folder):
    """Every file under ``folder`` (hidden ones too): relative path -> bytes."""
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def test_classes_that_differ_only_in_case_or_punctuation_get_sample_files_of_their_own(tmp_path):
    sounds = distinct_sounds(tmp_path / "sounds", ["hi hat", "hi_hat", "Kick", "kick"], per_class=2)
    pack = write_sample_pack(tmp_path / "pack", sounds)
    names = sorted(path.name for path in (tmp_path / "pack" / "samples").iterdir())
    assert names == ["Kick_01.wav", "Kick_02.wav", "hi_hat_01.wav", "hi_hat_02.wav", "hi_hat_2_01.wav",
                     "hi_hat_2_02.wav", "kick_2_01.wav", "kick_2_02.wav"]
    assert len({name.casefold() for name in names}) == 8  # one file each on macOS and Windows too
    # Each sound, bit-exact, under its own name: none overwrote another, no temporary file is left.
    sources = {label: [path for path, of in sounds if of == label] for label in pack["samples"]}
    for label, copies in pack["samples"].items():
        assert [copy.read_bytes() for copy in copies] == [source.read_bytes() for source in sources[label]]
    assert sorted(region["sample"] for region in regions(pack["sfz"])) == names
    assert lint(pack["sfz"]) == []


# A class name, and how the .dspreset names its group: control characters escaped, the rest kept.
HOSTILE_NAMES = [
    ("kick\n<region> sample=evil.wav", r"kick\n<region> sample=evil.wav"),
    ("kick\r<region> sample=evil.wav", r"kick\r<region> sample=evil.wav"),
    ("kick\u2028<region> sample=evil.wav", r"kick\u2028<region> sample=evil.wav"),  # a Unicode line break
    ("kick */ /* <region> sample=evil.wav", "kick */ /* <region> sample=evil.wav"),
    ("kick\x00\x01\x1b[2J & <x/>", r"kick\x00\x01\x1b[2J & <x/>"),  # not even allowed in XML 1.0
]


@pytest.mark.parametrize("label,shown", HOSTILE_NAMES)
def test_a_class_name_cannot_add_regions_to_the_sfz_or_break_the_dspreset(tmp_path, label, shown):
    sounds = distinct_sounds(tmp_path / "sounds", [label, "snare"], per_class=2)
    pack = write_sample_pack(tmp_path / "pack", sounds)
    written = sorted(path.name for path in (tmp_path / "pack" / "samples").iterdir())
    assert len(written) == 4
    # The regions sfzlint reads are exactly the sounds written, on their classes' keys.
    found = regions(pack["sfz"])
    assert sorted(region["sample"] for region in found) == written
    assert "evil.wav" not in {region["sample"] for region in found} and len(found) == 4
    assert sorted(int(region["key"]) for region in found) == [36, 36, 38, 38]
    assert lint(pack["sfz"]) == []
    assert all(line.isprintable() for line in pack["sfz"].read_text(encoding="utf-8").split("\n"))
    # The preset is well-formed XML whose group keeps the name, its control characters escaped.
    groups = ElementTree.parse(pack["dspreset"]).getroot().find("groups").findall("group")
    assert [group.get("name") for group in groups] == [shown, "snare"]
    assert [len(group.findall("sample")) for group in groups] == [2, 2]
    assert sorted(Path(sample.get("path")).name for group in groups for sample in group.findall("sample")) == written


def test_a_pack_that_fails_while_copying_leaves_the_previous_pack_and_no_half_written_wav(tmp_path, monkeypatch):
    write_sample_pack(tmp_path / "pack", distinct_sounds(tmp_path / "old", ["kick", "snare"], per_class=2))
    before = tree_contents(tmp_path / "pack")
    copies = []

    def copy_then_fail(source, target):  # the disk fills up in the middle of the third sample
        copies.append(target)
        if len(copies) == 3:
            Path(target).write_bytes(Path(source).read_bytes()[:100])
            raise OSError(28, "No space left on device")
        return Path(target).write_bytes(Path(source).read_bytes())
    monkeypatch.setattr("soundkit.sample_pack.shutil.copyfile", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_sample_pack(tmp_path / "pack", distinct_sounds(tmp_path / "new", ["clap", "kick"], per_class=2))
    assert tree_contents(tmp_path / "pack") == before  # the old samples and instruments, and nothing else
    assert not (tmp_path / "pack" / "samples" / "clap_01.wav").exists()
