"""Where sounds lie in a trained model's latent space: the prior new sounds come from, and its main directions.

Plain numpy on latent vectors (what ``VAE.encode`` returns); nothing here loads
TensorFlow. ``LatentPrior`` is saved beside the model as ``latent_prior.json``
(see folders.py); the PCA and discriminant directions draw the latent map.
"""

import numpy as np


KERNEL_WIDTH = 0.5   # new sounds near the training clips: a clip's latent, moved by this x the spread of its neighbours
NEAR_CLIPS = 5       # ... its nearest clips of the same class
SPREAD_CAP = 1.0     # ... a spread no wider than this x its class's median one (0: no cap)


class LatentPrior:
    """Where the training clips lie in the latent space: one Gaussian per class (or one for all), and the
    clips' own latent vectors.

    A VAE's aggregate posterior rarely fills N(0, I) evenly; drawing new latent
    vectors where the training clips actually lie gives clearer, more varied
    sounds (ex-post density estimation). Two ways to draw, per class:

    - ``kernel_width > 0`` (the default, ``KERNEL_WIDTH``): a kernel density
      estimate. Each new vector starts at the latent vector of a training clip of
      the class, drawn at random, and moves by ``kernel_width`` times the spread
      of its ``NEAR_CLIPS`` nearest clips of that class around it (a Gaussian
      with their covariance). A class made of several kinds (closed and open
      hi-hats) keeps its kinds instead of filling the space between them with
      blends no kit holds (measured: benchmarks/README.md, "Realism"). A clip
      far from the rest of its class has far neighbours: its spread is capped at
      ``spread_cap`` times the class's median one, so its new sounds stay near it;
    - ``kernel_width = 0``: the class's Gaussian. A class with few clips is
      shrunk towards the within-class spread pooled over all classes, so it
      never collapses onto copies and stays where its clips are.

    Saved as JSON next to the model it was fitted for (format 1, Gaussians only, is still read: it draws
    from the Gaussians).
    """

    FORMAT_VERSION = 2   # 2: the clips' latent vectors and the pooled spread as well

    def __init__(self, classes, counts, means, covariances, members=None, member_classes=None, pooled=None):
        self.classes = list(classes)      # [] for one Gaussian over every clip
        self.counts = [int(c) for c in counts]
        self.means = np.asarray(means, dtype=np.float64)
        self.covariances = np.asarray(covariances, dtype=np.float64)
        self.members = None if members is None else np.asarray(members, dtype=np.float64)
        self.member_classes = None if member_classes is None else np.asarray(member_classes, dtype=int)
        self.pooled = None if pooled is None else np.asarray(pooled, dtype=np.float64)
        self.kernel_width, self.spread_cap = KERNEL_WIDTH, SPREAD_CAP
        arrays = [self.means, self.covariances] + [a for a in (self.members, self.pooled) if a is not None]
        if not all(np.all(np.isfinite(array)) for array in arrays):
            raise ValueError("a latent prior needs finite means and covariances")
        self.factors = _square_roots(self.covariances)
        # Each class's rows of ``members``, and per member the square root of its neighbours' covariance.
        self.member_rows = None if self.members is None else \
            [np.flatnonzero(self.member_classes == component) for component in range(len(self.means))]
        self.local_factors = None if self.members is None else self._local_factors()
        if self.members is not None:  # each clip's spread (the trace of its covariance) over its class's median
            spreads = np.sum(self.local_factors ** 2, axis=(1, 2))
            self.relative_spreads = np.empty(len(spreads))
            for rows in self.member_rows:
                self.relative_spreads[rows] = spreads[rows] / max(float(np.median(spreads[rows])), 1e-12)

    def _local_factors(self):
        """Per clip: the square root of the covariance of its NEAR_CLIPS nearest clips of the same class around
        it (the pooled within-class covariance for a class of one clip)."""
        covariances = np.empty((len(self.members), *self.pooled.shape))
        for rows in self.member_rows:
            points = self.members[rows]
            distances = np.linalg.norm(points[:, None] - points[None], axis=2)
            near = np.argsort(distances, axis=1)[:, 1:NEAR_CLIPS + 1]   # (the first is the clip itself)
            for row, neighbours in zip(rows, near):
                offsets = self.members[rows[neighbours]] - self.members[row]
                covariances[row] = offsets.T @ offsets / len(offsets) if len(offsets) else self.pooled
        return _square_roots(covariances)

    @classmethod
    def fit(cls, latent_means, labels=None, classes=()):
        """Fit to latent means (n, dim); ``labels`` are indices into ``classes`` (None: one Gaussian)."""
        latents = np.asarray(latent_means, dtype=np.float64)
        if latents.ndim != 2 or not len(latents):
            raise ValueError(f"latent means must be a non-empty (clips, dim) array, got shape {latents.shape}")
        if not np.all(np.isfinite(latents)):
            # eigh() of a NaN covariance raises or returns garbage depending on the LAPACK build.
            bad = int(np.sum(~np.all(np.isfinite(latents), axis=1)))
            raise ValueError(f"{bad} of {len(latents)} latent means are NaN or infinite: "
                             f"cannot fit a latent prior to them")
        dim = latents.shape[1]
        overall = np.cov(latents, rowvar=False).reshape(dim, dim) if len(latents) > 1 else np.eye(dim)
        if labels is None or not len(classes):
            return cls([], [len(latents)], latents.mean(axis=0)[None], overall[None], latents,
                       np.zeros(len(latents), dtype=int), overall)
        labels = np.asarray(labels).reshape(-1)
        groups = [latents[labels == index] for index in range(len(classes))]
        for name, members in zip(classes, groups):
            if not len(members):
                raise ValueError(f"class {name!r} has no clips to fit its latent Gaussian to")
        # The spread of clips around their own class mean, pooled over the classes: what a small class
        # is shrunk towards. (The spread of all clips would also hold the distances between the
        # classes, and a small class's samples would wander into the others.)
        centred = [members - members.mean(axis=0) for members in groups]
        scatter = sum(deviations.T @ deviations for deviations in centred)
        pooled = scatter / (len(latents) - len(groups)) if len(latents) > len(groups) else overall
        counts, means, covariances = [], [], []
        for members in groups:
            own = np.cov(members, rowvar=False).reshape(dim, dim) if len(members) > 1 else np.zeros((dim, dim))
            shrink = dim / (dim + len(members))
            counts.append(len(members))
            means.append(members.mean(axis=0))
            covariances.append((1 - shrink) * own + shrink * pooled)
        return cls(classes, counts, means, covariances, latents, labels, pooled)

    def sample(self, count, labels=None, rng=None, temperature=1.0):
        """``count`` latent vectors (float32); ``labels`` picks the class of each (None: every class in turn).

        Drawn as ``kernel_width`` says (see the class); ``temperature`` scales the spread either way.
        """
        rng = rng if rng is not None else np.random.default_rng(0)
        if labels is None:
            components = np.arange(count) % len(self.means)
        else:
            components = np.broadcast_to(np.asarray(labels, dtype=int).reshape(-1), (count,))
            if components.min() < 0 or components.max() >= len(self.means):
                raise ValueError(f"labels must be in 0..{len(self.means) - 1}")
        noise = rng.standard_normal((count, self.means.shape[1])) * temperature
        if self.kernel_width > 0 and self.members is not None:
            starts = np.array([rng.choice(self.member_rows[component]) for component in components])
            factors = self.local_factors[starts]
            if self.spread_cap > 0:
                over = self.relative_spreads[starts] / self.spread_cap   # > 1: wider than the cap allows
                factors = factors / np.sqrt(np.maximum(over, 1.0))[:, None, None]
            latents = self.members[starts] + self.kernel_width * np.einsum("nij,nj->ni", factors, noise)
        else:
            latents = self.means[components] + np.einsum("nij,nj->ni", self.factors[components], noise)
        return latents.astype("float32")

    def to_json(self):
        return {"format_version": self.FORMAT_VERSION, "classes": self.classes, "counts": self.counts,
                "means": self.means.tolist(), "covariances": self.covariances.tolist(),
                **({} if self.members is None else {"members": self.members.tolist(),
                                                    "member_classes": self.member_classes.tolist(),
                                                    "pooled": self.pooled.tolist()})}

    @classmethod
    def from_json(cls, data):
        if data.get("format_version") not in (1, cls.FORMAT_VERSION):
            raise ValueError(f"unknown latent prior format {data.get('format_version')!r}")
        return cls(data["classes"], data["counts"], data["means"], data["covariances"],
                   data.get("members"), data.get("member_classes"), data.get("pooled"))


def _square_roots(covariances):
    """Square roots of covariance matrices (n, dim, dim), by eigen-decomposition: works when singular too."""
    values, vectors = np.linalg.eigh(covariances)
    return vectors * np.sqrt(np.maximum(values, 0.0))[:, None, :]


def fit_latent_prior(vae, spectrograms, clips, train_indices, class_names):
    """Fit a ``LatentPrior`` to where ``vae`` puts the training clips (one Gaussian per class when named).

    Raises ValueError when the clips encode to NaN or infinity (a diverged model or damaged data).
    """
    rows = np.sort(np.asarray(train_indices, dtype=int))
    means = vae.encode_rows(spectrograms, rows)
    labels = [class_names.index(clips[i]["label"]) for i in rows] if class_names else None
    return LatentPrior.fit(means, labels, class_names)


def latent_pca(means, n_components=2):
    """Project latent vectors onto their main directions (principal component analysis).

    Parameters
    ----------
    means : numpy.ndarray
        (clips, latent_dim) latent means.
    n_components : int
        Number of directions to keep; fewer are returned when the data has fewer
        dimensions or clips.

    Returns
    -------
    projected : numpy.ndarray
        (clips, n_components) coordinates along the directions.
    components : numpy.ndarray
        (n_components, latent_dim) unit directions, most important first; each is
        signed so that its largest coefficient is positive (reproducible signs).
    explained_variance_ratio : numpy.ndarray
        (n_components,) share of the total variance along each direction.

    Examples
    --------
    >>> t = np.linspace(-1, 1, 50)[:, None]
    >>> projected, components, ratio = latent_pca(t * [[3.0, 4.0, 0.0]])
    >>> bool(ratio[0] > 0.99)
    True
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or len(means) == 0:
        raise ValueError(f"means must be a non-empty (clips, latent_dim) array, got shape {means.shape}")
    centred = means - means.mean(axis=0)
    _, singular_values, directions = np.linalg.svd(centred, full_matrices=False)
    n_components = min(n_components, len(singular_values))
    components = directions[:n_components]
    largest = np.argmax(np.abs(components), axis=1)
    components = components * np.sign(components[np.arange(n_components), largest])[:, None]
    variances = singular_values ** 2
    total = variances.sum()
    explained_variance_ratio = variances[:n_components] / total if total > 0 else np.zeros(n_components)
    return centred @ components.T, components, explained_variance_ratio


def latent_discriminants(means, groups, n_components=2):
    """Project latent vectors onto the directions that best separate their groups (Fisher's LDA).

    Where PCA keeps the directions of largest spread (on speech, often the
    speaker), these maximise the spread of the group means against the spread
    within each group. Needs at least three groups for two directions.

    Returns
    -------
    projected : numpy.ndarray
        (clips, n_components) coordinates, centred, in units of the within-group standard deviation.
    separation : numpy.ndarray
        (n_components,) between-group to within-group variance ratio along each direction.
    """
    means = np.asarray(means, dtype=np.float64)
    names = sorted(set(groups), key=str)
    if len(names) < 3:
        raise ValueError(f"two discriminant directions need at least 3 groups, got {len(names)}")
    index = np.array([names.index(group) for group in groups])
    centred = means - means.mean(axis=0)
    group_means = np.stack([centred[index == i].mean(axis=0) for i in range(len(names))])
    within = centred - group_means[index]
    within_cov = within.T @ within / len(means)
    between_cov = (group_means.T * np.bincount(index)) @ group_means / len(means)
    # Whiten the within-group spread (a small ridge keeps unused latent dimensions harmless).
    values, vectors = np.linalg.eigh(within_cov + 1e-6 * np.trace(within_cov) / len(within_cov) * np.eye(len(within_cov)))
    whiten = vectors / np.sqrt(values)
    separation, directions = np.linalg.eigh(whiten.T @ between_cov @ whiten)
    order = np.argsort(separation)[::-1][:n_components]
    components = whiten @ directions[:, order]
    components *= np.sign(components[np.argmax(np.abs(components), axis=0), np.arange(len(order))])
    return centred @ components, separation[order]


def latent_grid_points(means, grid_size, span):
    """Latent vectors on a grid along the two main PCA directions of ``means``.

    The centre is the mean latent vector; columns move along the first direction,
    rows along the second (top row = positive), from ``-span`` to ``+span``
    standard deviations of the clips along that direction.

    Returns
    -------
    latents : numpy.ndarray
        (grid_size, grid_size, latent_dim).
    offsets : numpy.ndarray
        (grid_size,) the steps in standard deviations, e.g. [-2, -1, 0, 1, 2].
    """
    means = np.asarray(means, dtype=np.float64)
    projected, components, _ = latent_pca(means)
    if len(components) < 2:  # a 1-D latent space (or one clip): the second direction is empty
        components = np.vstack([components, np.zeros((2 - len(components), means.shape[1]))])
        projected = np.hstack([projected, np.zeros((len(projected), 2 - projected.shape[1]))])
    deviations = projected.std(axis=0)
    offsets = np.linspace(-span, span, grid_size)
    column_steps = offsets[None, :, None] * deviations[0] * components[0]
    row_steps = offsets[::-1, None, None] * deviations[1] * components[1]
    return means.mean(axis=0) + column_steps + row_steps, offsets


class Knobs:
    """Directions in the latent space that turn a measured descriptor up or down (brightness, length ...).

    Each direction is the regression of the training clips' latent means on one
    descriptor, standardised over those clips: how their latent vectors change,
    on average, from one clip to another one standard deviation brighter (or
    longer ...). Turning a knob by ``k`` moves a latent vector ``k`` times that
    step, along a path the training clips take, so the decoder knows where it
    is going. This works for unconditional models too.

    With classes, both are measured within each class (around the class's own
    mean), so a knob makes a snare brighter rather than turning it into a hi-hat.
    A class with at least ``MIN_CLASS_CLIPS`` clips also gets directions of its
    own, fitted to its clips alone (per standard deviation of its own clips):
    what makes a snare brighter is not what makes a hi-hat brighter, and a kick's
    pitch does not follow the direction the other classes' clips give it
    (measured: benchmarks/README.md, "Sounds asked for in words").
    ``shift(settings, label)`` turns a sound of class ``label`` with them.
    """

    FORMAT_VERSION = 2       # 2: directions per class as well
    MIN_CLASS_CLIPS = 12     # fewer clips than this: the class turns with the directions of all classes

    def __init__(self, names, directions, scores, class_directions=None):
        self.names = list(names)
        self.directions = np.asarray(directions, dtype=np.float64)   # (knobs, latent_dim): per standard deviation
        self.scores = [float(score) for score in scores]              # how well the latents predict each (R^2)
        self.class_directions = {str(label): np.asarray(value, dtype=np.float64)
                                 for label, value in (class_directions or {}).items()}

    @classmethod
    def fit(cls, latent_means, descriptors, names, groups=None, ridge=1e-2):
        """Fit one direction per descriptor column; ValueError for non-finite inputs or fewer than 3 clips.

        ``groups`` (one class per clip, optional): measure within each class.

        ``scores`` are the R^2 of a ridge regression the other way round (latents to
        descriptor): how much of the descriptor the latent space holds at all.
        """
        latents = np.asarray(latent_means, dtype=np.float64)
        values = np.asarray(descriptors, dtype=np.float64)
        if len(latents) < 3 or not (np.all(np.isfinite(latents)) and np.all(np.isfinite(values))):
            raise ValueError("knobs need at least 3 clips with finite latent means and descriptors")
        groups = np.zeros(len(latents), dtype=int) if groups is None else np.asarray(groups)
        centred, values = latents.copy(), values.copy()
        for group in np.unique(groups):
            members = groups == group
            centred[members] -= latents[members].mean(axis=0)
            values[members] -= values[members].mean(axis=0)
        directions = _standard_directions(centred, values)                 # (knobs, latent_dim)
        spread = values.std(axis=0)
        standard = values / np.where(spread > 0, spread, 1.0)
        gram = centred.T @ centred + ridge * len(latents) * np.eye(latents.shape[1])
        predicted = centred @ np.linalg.solve(gram, centred.T @ standard)
        scores = 1 - ((standard - predicted) ** 2).sum(axis=0) / np.maximum((standard ** 2).sum(axis=0), 1e-12)
        own = {str(group): _standard_directions(centred[groups == group], values[groups == group])
               for group in np.unique(groups) if np.sum(groups == group) >= cls.MIN_CLASS_CLIPS} \
            if len(np.unique(groups)) > 1 else {}
        return cls(names, directions, scores, own)

    def shift(self, settings, label=None):
        """The latent step for {knob name: standard deviations}, for a sound of class ``label`` (its own
        directions where it has them; None or another class: those of all classes). Unknown knobs raise
        ValueError."""
        unknown = sorted(set(settings) - set(self.names))
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; this model has {self.names}")
        amounts = np.array([float(settings.get(name, 0.0)) for name in self.names])
        return (amounts @ self.class_directions.get(label, self.directions)).astype(np.float32)

    def to_json(self):
        return {"format_version": self.FORMAT_VERSION, "names": self.names, "directions": self.directions.tolist(),
                "r2": self.scores, "class_directions": {label: value.tolist()
                                                        for label, value in self.class_directions.items()}}

    @classmethod
    def from_json(cls, data):
        return cls(data["names"], data["directions"], data["r2"], data.get("class_directions"))


def _standard_directions(centred, values):
    """How centred latents change per standard deviation of each (centred) descriptor: (knobs, latent_dim)."""
    spread = values.std(axis=0)
    standard = values / np.where(spread > 0, spread, 1.0)
    return (standard.T @ centred) / len(centred)


def interpolate_latents(start, end, steps, method="slerp"):
    """Points from ``start`` to ``end`` in latent space, both ends included.

    Parameters
    ----------
    start, end : array_like
        Latent vectors of the same length.
    steps : int
        Number of points, at least 2.
    method : {"slerp", "linear"}
        "linear": evenly spaced on the straight line. "slerp": spherical
        interpolation, evenly spaced in angle; the path keeps the length of the
        vectors instead of cutting through the low-probability centre of the
        prior. When the angle is 0 or 180 degrees (or an end is the zero vector)
        the direction is undefined and slerp falls back to linear.

    Returns
    -------
    numpy.ndarray
        (steps, latent_dim) float32; the first row is ``start``, the last ``end``.

    Examples
    --------
    >>> interpolate_latents([1.0, 0.0], [0.0, 1.0], 3, "slerp").astype(float).round(3).tolist()
    [[1.0, 0.0], [0.707, 0.707], [0.0, 1.0]]
    >>> interpolate_latents([1.0, 0.0], [0.0, 1.0], 3, "linear").tolist()
    [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    """
    start = np.asarray(start, dtype=np.float64).reshape(-1)
    end = np.asarray(end, dtype=np.float64).reshape(-1)
    if start.shape != end.shape:
        raise ValueError(f"start and end must have the same length, got {len(start)} and {len(end)}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if method not in ("linear", "slerp"):
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    positions = np.linspace(0.0, 1.0, steps)[:, np.newaxis]
    points = (1 - positions) * start + positions * end
    lengths = np.linalg.norm(start) * np.linalg.norm(end)
    if method == "slerp" and lengths > 0:
        angle = np.arccos(np.clip(np.dot(start, end) / lengths, -1.0, 1.0))
        if np.sin(angle) > 1e-6:
            points = (np.sin((1 - positions) * angle) * start + np.sin(positions * angle) * end) / np.sin(angle)
    points[0], points[-1] = start, end  # exactly, not up to rounding
    return points.astype(np.float32)


# --- sorting an unlabelled folder into groups ------------------------------------------------

GROUP_RANGE = (2, 8)  # the numbers of groups tried when none is set


def kmeans(points, k, seed=0, iterations=100, restarts=4):
    """K-means (k-means++ starts, Lloyd's iterations), best of ``restarts``: (labels, centres, inertia)."""
    points = np.asarray(points, dtype=np.float64)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        centres = [points[rng.integers(len(points))]]
        for _ in range(1, k):  # k-means++: far points are likelier starts
            distances = np.min([((points - centre) ** 2).sum(axis=1) for centre in centres], axis=0)
            total = distances.sum()
            probabilities = distances / total if total > 0 else np.full(len(points), 1 / len(points))
            centres.append(points[rng.choice(len(points), p=probabilities)])
        centres = np.array(centres)
        for _ in range(iterations):
            labels = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
            moved = np.array([points[labels == j].mean(axis=0) if np.any(labels == j) else centres[j]
                              for j in range(k)])
            if np.allclose(moved, centres):
                break
            centres = moved
        inertia = float(((points - centres[labels]) ** 2).sum())
        if best is None or inertia < best[2]:
            best = (labels, centres, inertia)
    return best


def silhouette(points, labels):
    """Mean silhouette of a clustering (-1 to 1; higher: tighter, better separated groups)."""
    points = np.asarray(points, dtype=np.float64)
    squared = (points ** 2).sum(axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * points @ points.T, 0.0))
    groups = np.unique(labels)
    if len(groups) < 2:
        return 0.0
    mean_to = np.stack([distances[:, labels == group].mean(axis=1) for group in groups], axis=1)
    sizes = np.array([np.sum(labels == group) for group in groups])
    own = np.searchsorted(groups, labels)
    inside = mean_to[np.arange(len(points)), own] * sizes[own] / np.maximum(sizes[own] - 1, 1)
    mean_to[np.arange(len(points)), own] = np.inf
    nearest = mean_to.min(axis=1)
    score = (nearest - inside) / np.maximum(np.maximum(nearest, inside), 1e-12)
    return float(np.mean(np.where(sizes[own] > 1, score, 0.0)))


def choose_groups(points, k=0, seed=0):
    """(labels, centres, scores): K-means with ``k`` groups, or, for k=0, the K of ``GROUP_RANGE`` with the
    highest mean silhouette (``scores``: K -> silhouette; at most one group per 3 clips)."""
    points = np.asarray(points, dtype=np.float64)
    if k:
        labels, centres, _ = kmeans(points, k, seed)
        return labels, centres, {k: silhouette(points, labels)}
    tried = range(GROUP_RANGE[0], max(GROUP_RANGE[0], min(GROUP_RANGE[1], len(points) // 3)) + 1)
    results = {size: kmeans(points, size, seed) for size in tried}
    scores = {size: silhouette(points, result[0]) for size, result in results.items()}
    chosen = max(scores, key=scores.get)
    return results[chosen][0], results[chosen][1], scores


def name_groups(labels, brightness, length):
    """A name per group from its clips' character: "dark"/"bright" and "short"/"long" against the medians
    of all clips (``-2``, ``-3`` ... when two groups share one)."""
    brightness, length = np.asarray(brightness, dtype=float), np.asarray(length, dtype=float)
    names, used = {}, {}
    for group in np.unique(labels):
        members = labels == group
        name = ("bright" if np.median(brightness[members]) > np.median(brightness) else "dark") + "-" + \
               ("long" if np.median(length[members]) > np.median(length) else "short")
        used[name] = used.get(name, 0) + 1
        names[int(group)] = name if used[name] == 1 else f"{name}-{used[name]}"
    return names
