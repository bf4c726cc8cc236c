"""Training under tf.distribute: MirroredStrategy on the CPU split into two logical devices, and
MultiWorkerMirroredStrategy with two worker processes on this machine."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soundkit import folders

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter (logical devices must be set before TensorFlow starts):
#   python -c SCRIPT ROOT FOLDER mirrored|multi_worker
# Trains a tiny VAE with a latent classifier, so batches are (spectrograms, labels) tuples. The classifier's
# weight is high and the run 60 steps long so that it learns whatever the (not bit-reproducible) order of the
# all-reduce: at the default weight its loss wandered around ln 2 in some runs, and in 24 steps one full-suite
# run ended at 0.58 from 0.71 (in 60 steps every probe ended below 0.01).
SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import train
from soundkit import training
from soundkit.configurator import configure

strategy = training.choose_strategy(sys.argv[3], cpu_replicas=2 if sys.argv[3] == "mirrored" else 0)
config = configure(vars(train), ["--conv_filters=[4, 8]", "--conv_kernels=[3, 3]", "--conv_strides=[2, 2]",
                                 "--latent_space_dim=3", "--learning_rate=0.01", "--latent_classifier_weight=2000"])
rng = np.random.default_rng(0)
images = np.full((64, 32, 16), 0.1, dtype=np.float32)
rows = rng.integers(2, 30, 64)
for image, row in zip(images, rows):
    image[row - 1:row + 2] = 0.9
np.save(sys.argv[2] + "/spectrograms.npy", images)
reader = training.SpectrogramReader(sys.argv[2] + "/spectrograms.npy")
labels = (rows[:, None] > 16).astype(np.int32)  # two classes
dataset = training.make_dataset(reader, np.arange(64), labels, 16 * strategy.num_replicas_in_sync, True, 0)
with strategy.scope():
    vae = training.build_vae(config, (32, 16, 1), 0, latent_classes=2)
history = vae.fit(dataset, epochs=30, verbose=0).history
differences = []  # between the copies of each trainable weight held by this process's replicas
for variable in vae.trainable_weights:
    copies = [np.asarray(copy) for copy in strategy.experimental_local_results(variable.value)]
    differences.append(max(float(np.max(np.abs(c - copies[0]))) for c in copies))
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "chief": training.is_chief(strategy),
                  "devices": list(strategy.extended.worker_devices), "copies": len(copies),
                  "losses": history["loss"], "label_losses": history["label_loss"],
                  "max_replica_difference": max(differences),
                  "weights": {w.path: np.asarray(w).astype(float).ravel().tolist() for w in vae.weights},
                  "trainable": [w.path for w in vae.trainable_weights]}))
"""


def assert_learned(report):
    losses, label_losses = report["losses"], report["label_losses"]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    assert label_losses[-1] < 0.5 * label_losses[0], label_losses


@pytest.mark.slow
def test_mirrored_training_on_two_cpu_replicas_learns_and_stays_in_sync(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), str(tmp_path), "mirrored"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["copies"] == 2
    assert len(set(report["devices"])) == 2
    assert_learned(report)
    assert report["max_replica_difference"] == 0.0


# --- MultiWorkerMirroredStrategy: two worker processes on this machine --------------------------

def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_workers(argv_of_worker, tmp_path, timeout=300, tries=3):
    """Start two processes as the workers of one TF_CONFIG cluster on localhost; return their results.

    The ports are found free, closed, then handed to TensorFlow: another process may take one in
    between. A cluster whose port was taken is started again on new ports, up to ``tries`` times;
    any other failure fails at once.
    """
    for attempt in range(tries):
        outputs, codes = start_workers(argv_of_worker, free_ports(2), timeout)
        port_taken = any("address already in use" in stderr.lower() for _, stderr in outputs)
        if not port_taken or attempt == tries - 1:
            break
    for code, (_, stderr) in zip(codes, outputs):
        assert code == 0, stderr[-3000:]
    return [stdout for stdout, _ in outputs]


def start_workers(argv_of_worker, ports, timeout):
    """((stdout, stderr) of each worker, their exit codes), on localhost at ``ports``."""
    import os

    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(argv_of_worker(index), env=env, cwd=ROOT, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        outputs = [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            process.kill()
    return outputs, [process.returncode for process in processes]


@pytest.mark.slow
def test_multi_worker_training_in_two_processes_learns_and_keeps_the_workers_identical(tmp_path):
    folders = [tmp_path / f"worker{index}" for index in range(2)]
    for folder in folders:
        folder.mkdir()
    outputs = run_workers(
        lambda index: [sys.executable, "-c", SCRIPT, str(ROOT), str(folders[index]), "multi_worker"], tmp_path)
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout in outputs]
    assert [report["replicas"] for report in reports] == [2, 2]
    assert [report["chief"] for report in reports] == [True, False]
    assert_learned(reports[0])
    assert reports[0]["losses"] == reports[1]["losses"]  # averaged over both workers, every epoch
    weights = [report["weights"] for report in reports]
    trainable = reports[0]["trainable"]
    assert len(trainable) > 10 and all(weights[0][path] == weights[1][path] for path in trainable)  # bit for bit
    # Only the batch-normalisation statistics are each worker's own (from its half of every batch).
    differing = [path for path in weights[0] if weights[0][path] != weights[1][path]]
    assert all(path.endswith(("moving_mean", "moving_variance")) for path in differing), differing


@pytest.mark.slow
def test_train_py_with_distribute_multi_worker_runs_and_only_worker_0_writes(tmp_path):
    import train
    from conftest import TINY_MODEL, preprocess_args
    import preprocess
    from data.synthesize_drums import write_demo_drums

    write_demo_drums(tmp_path / "audio", clips_per_class=4, sample_rate=22050, duration=0.74)
    preprocess.main(preprocess_args(tmp_path / "audio", tmp_path / "spectrograms"))
    model_dirs = [tmp_path / f"model{index}" for index in range(2)]
    outputs = run_workers(lambda index: [
        sys.executable, "train.py", "--distribute=multi_worker", f"--spectrograms_dir={tmp_path / 'spectrograms'}",
        f"--model_dir={model_dirs[index]}", "--epochs=3", *TINY_MODEL], tmp_path)
    assert "2 replica(s), batch 16" in outputs[0] and "2 replica(s), batch 16" in outputs[1]
    assert "this worker writes no files" in outputs[1]
    assert not model_dirs[1].exists() or not any(model_dirs[1].iterdir())
    written = sorted(path.name for path in model_dirs[0].iterdir())
    assert written == ["history.csv", "latent_prior.json", "model.keras", "params.json", "training.json"]
    with open(model_dirs[0] / "history.csv") as file:
        assert len(file.read().strip().splitlines()) == 1 + 3
    model = folders.load_model_folder(model_dirs[0])
    vae, training = model.vae, model.training
    assert training["classes"] == ["clap", "hihat", "kick", "snare", "tom"]
    assert vae.latent_space_dim == 4
    with pytest.raises(Exception, match="MAX_MINUTES cannot be used with DISTRIBUTE=multi_worker"):
        train.validate(train.configure(vars(train), ["--distribute=multi_worker", "--max_minutes=5"]))


@pytest.mark.parametrize("clips,replicas,sizes", [(17, 1, [16, 1]), (17, 2, [16]), (18, 2, [16, 2]), (32, 2, [16, 16])])
def test_a_last_batch_too_small_to_give_every_replica_a_clip_is_left_out(tmp_path, clips, replicas, sizes):
    from soundkit import training

    np.save(tmp_path / "spectrograms.npy", np.zeros((clips, 4, 3), dtype=np.float32))
    reader = training.SpectrogramReader(tmp_path / "spectrograms.npy")
    dataset = training.make_dataset(reader, np.arange(clips), None, 16, False, 0, replicas=replicas)
    assert [len(batch) for batch in dataset] == sizes
    assert int(dataset.cardinality()) == len(sizes)
