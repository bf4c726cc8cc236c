"""Training under tf.distribute.MirroredStrategy, on the CPU split into two logical devices."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: logical devices must be set before TensorFlow starts.
SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import train
from configurator import configure

strategy = train.choose_strategy("mirrored", cpu_replicas=2)
config = configure(vars(train), ["--conv_filters=[4, 8]", "--conv_kernels=[3, 3]", "--conv_strides=[2, 2]",
                                 "--latent_space_dim=3", "--learning_rate=0.01"])
rng = np.random.default_rng(0)
images = np.full((64, 32, 16), 0.1, dtype=np.float32)
for image, row in zip(images, rng.integers(2, 30, 64)):
    image[row - 1:row + 2] = 0.9
np.save(sys.argv[2] + "/spectrograms.npy", images)
reader = train.SpectrogramReader(sys.argv[2] + "/spectrograms.npy")
dataset = train.make_dataset(reader, np.arange(64), None, 16 * strategy.num_replicas_in_sync, True, 0)
with strategy.scope():
    vae = train.build_vae(config, (32, 16, 1), 0)
history = vae.fit(dataset, epochs=12, verbose=0).history
differences = []
for variable in vae.trainable_weights:
    copies = [np.asarray(copy) for copy in strategy.experimental_local_results(variable.value)]
    differences.append(max(float(np.max(np.abs(c - copies[0]))) for c in copies))
print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                  "devices": list(strategy.extended.worker_devices),
                  "copies": len(copies), "losses": history["loss"],
                  "max_replica_difference": max(differences)}))
"""


@pytest.mark.slow
def test_mirrored_training_on_two_cpu_replicas_learns_and_stays_in_sync(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["copies"] == 2
    assert len(set(report["devices"])) == 2
    losses = report["losses"]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    assert report["max_replica_difference"] == 0.0
