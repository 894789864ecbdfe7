"""The k-NN in-domain detector: familiar features score low, unfamiliar ones high; round trip."""
import numpy as np

from inference.ood import KnnDetector


def test_knn_detector_separates_clusters_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    centre_a, centre_b, far = (rng.normal(size=64) for _ in range(3))
    train = np.concatenate([centre_a + 0.1 * rng.normal(size=(50, 64)), centre_b + 0.1 * rng.normal(size=(50, 64))])
    detector = KnnDetector.fit(train, k=5)
    familiar = detector.score(centre_a + 0.1 * rng.normal(size=(20, 64)))
    unfamiliar = detector.score(far + 0.1 * rng.normal(size=(20, 64)))
    assert familiar.max() < unfamiliar.min()
    detector.save(tmp_path / "ood.safetensors")
    loaded = KnnDetector.load(tmp_path / "ood.safetensors")
    assert loaded.k == 5
    assert np.allclose(loaded.score(train[:10]), detector.score(train[:10]), atol=1e-3)
