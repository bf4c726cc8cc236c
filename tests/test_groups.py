"""Unsorted folders: clips sorted into groups on the latent means, named by character; --similar_to."""

import json

import numpy as np
import pytest

from soundkit.latent_space import choose_groups, kmeans, name_groups, silhouette


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0]], dtype=float)
    return np.concatenate([centre + rng.standard_normal((30, 3)) for centre in centres]), np.repeat([0, 1, 2], 30)


def same_partition(a, b):
    return all(len(set(b[a == group])) == 1 for group in np.unique(a)) and len(set(a)) == len(set(b))


def test_kmeans_finds_well_separated_groups_and_the_silhouette_prefers_their_number():
    points, truth = blobs()
    labels, centres, inertia = kmeans(points, 3)
    assert same_partition(labels, truth)
    assert inertia == pytest.approx(float(((points - centres[labels]) ** 2).sum()))
    assert silhouette(points, truth) > 0.7 > 0.0 > silhouette(points, np.arange(90) % 3)  # vs a random split


def test_the_silhouette_is_scikit_learns():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (a dependency of librosa) is missing")
    points, truth = blobs(1)
    for labels in (truth, np.arange(90) % 3, np.array([0] * 89 + [1])):  # the last: a group of one clip
        assert silhouette(points, labels) == pytest.approx(metrics.silhouette_score(points, labels), abs=1e-8)
    chosen, _, scores = choose_groups(points)
    assert max(scores, key=scores.get) == 3 and same_partition(chosen, truth)
    assert sorted(scores) == list(range(2, 9))
    forced, _, scores = choose_groups(points, k=2)
    assert len(set(forced)) == 2 and list(scores) == [2]


def test_groups_are_named_by_brightness_and_length_against_the_medians_and_never_twice():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    brightness = np.array([1, 1, 9, 9, 9, 9, 1, 1.0])
    length = np.array([9, 9, 1, 1, 1, 1, 1, 1.0])
    assert name_groups(labels, brightness, length) == {0: "dark-long", 1: "bright-short", 2: "bright-short-2",
                                                       3: "dark-short"}


@pytest.mark.slow
def test_an_unlabelled_folder_is_sorted_into_groups_that_then_work_as_classes(tmp_path):
    from soundkit import folders
    import generate
    import preprocess
    import train
    from conftest import TINY_MODEL, preprocess_args
    from data.synthesize_drums import write_demo_drums

    write_demo_drums(tmp_path / "audio", clips_per_class=5, sample_rate=8000, duration=0.3)
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "spectrograms") + ["--labels=none"])
    train.main([f"--spectrograms_dir={tmp_path / 'spectrograms'}", f"--model_dir={tmp_path / 'model'}",
                "--epochs=10", "--validation_fraction=0.2", "--learning_rate=0.005", *TINY_MODEL])
    groups = json.loads((tmp_path / "model" / "groups.json").read_text())
    training = json.loads((tmp_path / "model" / "training.json").read_text())
    names = training["classes"]
    assert 2 <= len(names) <= 8 and sorted(set(groups["clips"].values())) == sorted(names)
    _, clips, _ = folders.load_spectrograms(tmp_path / "spectrograms")
    assert set(groups["clips"]) == {clip["id"] for clip in clips}  # held-out clips too
    assert all(clip["label"] is None for clip in clips)  # the folder itself stays unlabelled
    held_out = set(training["validation_ids"])
    for name, clip_id in groups["representatives"].items():
        assert groups["clips"][clip_id] == name and clip_id not in held_out
    assert all(name.split("-")[0] in ("dark", "bright") and name.split("-")[1] in ("short", "long") for name in names)
    # A group is a class from now on: the prior, --label, morphs by class.
    prior = json.loads((tmp_path / "model" / "latent_prior.json").read_text())
    assert prior["classes"] == names
    written = generate.main([f"--model_dir={tmp_path / 'model'}", f"--spectrograms_dir={tmp_path / 'spectrograms'}",
                             f"--output_dir={tmp_path / 'out'}", f"--label={names[0]}", "--num_generated=2",
                             "--num_reconstructed=0", "--griffin_lim_iterations=4", f"--morph_from={names[0]}",
                             f"--morph_to={names[-1]}", "--morph_steps=3"])
    assert [path.name for path in written["generated"]] == [f"generated_{names[0]}_{i:03d}.wav" for i in range(2)]
    assert len(written["morph"]) == 3
    # A description names a group as it names a class ("a bit short dark-long").
    described = generate.main([f"--model_dir={tmp_path / 'model'}", f"--spectrograms_dir={tmp_path / 'spectrograms'}",
                               f"--output_dir={tmp_path / 'words'}", f"--describe=a bit short {names[-1]}",
                               "--num_generated=2", "--num_reconstructed=0", "--griffin_lim_iterations=4"])
    assert [path.name for path in described["generated"]] == [f"generated_{names[-1]}_{i:03d}.wav" for i in range(2)]
    # --similar_to: the nearest clip of the library to one of its own files is that file, at distance 0.
    source = tmp_path / "audio" / clips[3]["file"]
    generate.main([f"--model_dir={tmp_path / 'model'}", f"--spectrograms_dir={tmp_path / 'spectrograms'}",
                   f"--output_dir={tmp_path / 'similar'}", f"--similar_to={source}", "--num_similar=4",
                   "--num_generated=0", "--num_reconstructed=0"])
    similar = json.loads((tmp_path / "similar" / "similar.json").read_text())["clips"]
    assert similar[0]["id"] == clips[3]["id"] and similar[0]["distance"] == pytest.approx(0.0, abs=1e-4)
    assert len(similar) == 4 and [clip["distance"] for clip in similar] == sorted(clip["distance"] for clip in similar)
    assert similar[0]["label"] == groups["clips"][clips[3]["id"]]


@pytest.mark.slow
def test_groups_can_be_set_by_hand_or_turned_off(tmp_path):
    import preprocess
    import train
    from conftest import TINY_MODEL, preprocess_args
    from data.synthesize_drums import write_demo_drums

    write_demo_drums(tmp_path / "audio", clips_per_class=3, sample_rate=8000, duration=0.3)
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "spectrograms") + ["--labels=none"])
    for groups, expected in ((3, 3), (1, 0)):
        model = tmp_path / f"model{groups}"
        train.main([f"--spectrograms_dir={tmp_path / 'spectrograms'}", f"--model_dir={model}", "--epochs=2",
                    f"--groups={groups}", *TINY_MODEL])
        assert len(json.loads((model / "training.json").read_text())["classes"]) == expected
        assert (model / "groups.json").exists() == bool(expected)
