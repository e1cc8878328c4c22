"""Structural checks of the compiled data holders Parity trusts beyond skops' defaults.

A skops file can only say which *types* it builds, not that their content is sane: scikit-learn's compiled
trees index their node arrays without bounds checks, so a crafted ``Tree`` whose child index points outside
the node array crashes the process at the first prediction (memory corruption, the kind of bug that becomes
code execution). Each type of :data:`STRUCTURE_CHECKS` that skops does not trust by default has a check
here, run on every loaded model before anything uses it.

The checks read the objects skops actually built, not the file's JSON: skops resolves shared references by
``__id__``, so what is built can differ from what a reader of ``schema.json`` would see. Building itself is
safe for these types (``Tree.__setstate__`` checks its arrays' dtype and shape; the others only keep
references); using them is not, until these checks pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from parity.core.errors import UntrustedModelError

#: Tree nodes are numbered as they are added, so a child always has a larger index than its parent: checking
#: that rules out cycles as well as indices outside the array.
TREE_LEAF = -1


def _fail(where: str, what: str) -> UntrustedModelError:
    return UntrustedModelError(
        f"{where}: {what}. The model file is malformed or crafted, and a model built from it could crash the "
        "process: refused. Save the model again from the fitted estimator with skops.io.dump."
    )


def _children_after_parents(where: str, left: np.ndarray, right: np.ndarray, internal: np.ndarray) -> None:
    """Each internal node's children lie inside the array, after the node itself."""
    count = len(left)
    index = np.arange(count)
    for name, child in (("left", left), ("right", right)):
        child = child.astype(np.int64)
        bad = internal & ((child <= index) | (child >= count))
        if bad.any():
            node = int(np.flatnonzero(bad)[0])
            raise _fail(
                where,
                f"node {node}'s {name} child is {int(child[node])}, outside nodes {node + 1}..{count - 1}",
            )


def _features_in_range(where: str, feature: np.ndarray, internal: np.ndarray, n_features: int) -> None:
    used = feature[internal].astype(np.int64)
    if used.size and (used.min() < 0 or used.max() >= n_features):
        raise _fail(where, f"a split uses feature {int(used.max())} of a model with {n_features} features")


def _owned(where: str, n_features: int | None) -> int:
    """The feature count of the fitted estimator that holds the object: scikit-learn checks the width of X
    against it (and skips that check when it is absent), so without it no feature index can be bounded."""
    if n_features is None:
        raise _fail(where, "it belongs to no fitted estimator with an integer n_features_in_")
    return n_features


def check_tree(tree: Any, where: str, n_features: int | None) -> None:
    """``sklearn.tree._tree.Tree``: node count, child and feature indices, value shape.

    Raises
    ------
    UntrustedModelError
        The tree's arrays are inconsistent.
    """
    # node_count is set from the file apart from the node array: read nothing before they agree
    if tree.node_count < 1 or tree.node_count != tree.capacity:
        raise _fail(where, f"node_count {tree.node_count} does not match its {tree.capacity} stored nodes")
    state = tree.__getstate__()
    nodes, values = state["nodes"], state["values"]
    left, right = nodes["left_child"], nodes["right_child"]
    leaf = (left == TREE_LEAF) & (right == TREE_LEAF)
    internal = ~leaf
    half = internal & ((left == TREE_LEAF) | (right == TREE_LEAF))
    if half.any():
        raise _fail(where, f"node {int(np.flatnonzero(half)[0])} has one child")
    _children_after_parents(where, left, right, internal)
    n_features = _owned(where, n_features)
    if tree.n_features != n_features:
        raise _fail(where, f"the tree is for {tree.n_features} features, its estimator for {n_features}")
    _features_in_range(where, nodes["feature"], internal, n_features)
    expected = (tree.node_count, tree.n_outputs, tree.max_n_classes)
    if tuple(values.shape) != expected:
        raise _fail(where, f"values have shape {values.shape}, expected {expected}")


def check_tree_predictor(predictor: Any, where: str, n_features: int | None) -> None:
    """HistGradientBoosting's ``TreePredictor``: child, feature and categorical-bitset indices.

    Raises
    ------
    UntrustedModelError
        The predictor's arrays are inconsistent.
    """
    nodes = getattr(predictor, "nodes", None)
    if not isinstance(nodes, np.ndarray) or nodes.ndim != 1 or len(nodes) < 1:
        raise _fail(where, "its node array is missing or not one-dimensional")
    try:
        from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    except ImportError:  # pragma: no cover - moved in another scikit-learn: the fields below still decide
        PREDICTOR_RECORD_DTYPE = nodes.dtype
    if nodes.dtype != PREDICTOR_RECORD_DTYPE:
        raise _fail(where, f"its nodes have dtype {nodes.dtype}, expected {PREDICTOR_RECORD_DTYPE}")
    internal = nodes["is_leaf"] == 0
    _children_after_parents(where, nodes["left"], nodes["right"], internal)
    _features_in_range(where, nodes["feature_idx"], internal, _owned(where, n_features))
    categorical = internal & (nodes["is_categorical"] != 0)
    for name in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
        bitsets = getattr(predictor, name, None)
        if not isinstance(bitsets, np.ndarray) or bitsets.ndim != 2 or bitsets.shape[1] != 8:
            raise _fail(where, f"{name} is not an (n, 8) array")
        index = nodes["bitset_idx"][categorical].astype(np.int64)
        if index.size and index.max() >= len(bitsets):
            raise _fail(where, f"a categorical split uses bitset {int(index.max())} of {len(bitsets)}")


def check_binary_tree(tree: Any, where: str, n_features: int | None) -> None:
    """``KDTree`` / ``BallTree``: sample indices, node ranges and the implicit binary layout.

    Raises
    ------
    UntrustedModelError
        The tree's arrays are inconsistent.
    """
    data, idx, node_data, bounds = tree.get_arrays()
    if data.ndim != 2 or idx.ndim != 1 or len(idx) != len(data):
        raise _fail(where, f"{len(idx)} sample indices for {len(data)} samples")
    n_samples = len(data)
    if n_samples and (idx.min() < 0 or idx.max() >= n_samples):
        raise _fail(where, "a sample index points outside the data")
    n_nodes = len(node_data)
    if n_nodes < 1 or n_nodes & (n_nodes + 1):  # a complete binary tree: 2**levels - 1 nodes
        raise _fail(where, f"{n_nodes} nodes is not a complete binary tree")
    start, end = node_data["idx_start"].astype(np.int64), node_data["idx_end"].astype(np.int64)
    if (start < 0).any() or (end > n_samples).any() or (start > end).any():
        raise _fail(where, "a node's sample range lies outside the data")
    internal = np.flatnonzero(node_data["is_leaf"] == 0)
    if internal.size and 2 * int(internal.max()) + 2 >= n_nodes:
        raise _fail(where, f"node {int(internal.max())} has children beyond the {n_nodes} nodes")
    if bounds.ndim != 3 or bounds.shape[1] != n_nodes or bounds.shape[2] != data.shape[1]:
        raise _fail(
            where, f"node bounds have shape {bounds.shape} for {n_nodes} nodes of {data.shape[1]} features"
        )
    if data.shape[1] != _owned(where, n_features):
        raise _fail(where, f"its data has {data.shape[1]} features, the model {n_features}")
    weights = tree.sample_weight
    if weights is not None and len(weights) != n_samples:
        raise _fail(where, f"{len(weights)} sample weights for {n_samples} samples")


#: Type name → the check of an object of that type (given where it sits and its owner's feature count).
STRUCTURE_CHECKS: dict[str, Callable[[Any, str, int | None], None]] = {
    "sklearn.tree._tree.Tree": check_tree,
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": check_tree_predictor,
    "sklearn.neighbors._kd_tree.KDTree": check_binary_tree,
    "sklearn.neighbors._ball_tree.BallTree": check_binary_tree,
}


def _type_name(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _parts(obj: object) -> Iterator[tuple[str, object]]:
    """The objects ``obj`` holds, each with its name: attributes, items, elements of object arrays."""
    if isinstance(obj, dict):
        yield from ((f"[{key!r}]", value) for key, value in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        yield from ((f"[{i}]", value) for i, value in enumerate(obj))
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            yield from ((f"[{i}]", value) for i, value in enumerate(obj.ravel()))
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield from ((f".{key}", value) for key, value in vars(obj).items())


def _feature_count(obj: object, where: str) -> int | None:
    """An object's own ``n_features_in_``, refused when it is there but not a count."""
    owned = (
        vars(obj).get("n_features_in_") if hasattr(obj, "__dict__") and not isinstance(obj, type) else None
    )
    if owned is not None and (
        not isinstance(owned, int | np.integer) or isinstance(owned, bool) or owned < 0
    ):
        raise _fail(where, f"n_features_in_ is {owned!r}, not a count of features")
    return None if owned is None else int(owned)


def check_structure(estimator: object, where: str) -> int:
    """Run :data:`STRUCTURE_CHECKS` on every object the estimator holds, before anything uses it.

    Parameters
    ----------
    estimator : object
        A freshly loaded model.
    where : str
        The file it came from, for messages.

    Returns
    -------
    int
        How many objects were checked.

    Raises
    ------
    UntrustedModelError
        An object's arrays are inconsistent; the message names the object's path inside the model.
    """
    # (object, owner's feature count): a part shared between estimators (skops keeps shared references) is
    # checked against every estimator that uses it
    seen: set[tuple[int, int | None]] = set()
    checked = 0
    stack: list[tuple[str, object, int | None]] = [("model", estimator, None)]
    while stack:
        path, obj, n_features = stack.pop()
        if (id(obj), n_features) in seen or isinstance(
            obj, str | bytes | int | float | complex | bool | type(None)
        ):
            continue
        seen.add((id(obj), n_features))
        check = STRUCTURE_CHECKS.get(_type_name(obj))
        if check is not None:
            check(obj, f"{where}: {path} ({type(obj).__name__})", n_features)
            checked += 1
        if not isinstance(obj, dict | list | tuple | set | frozenset | np.ndarray):
            # an object's parts are checked against its own feature count, never an ancestor's: a tree
            # inside a pipeline's last step sees what the earlier steps made of the rows
            n_features = _feature_count(obj, f"{where}: {path}")
        stack.extend((path + name, part, n_features) for name, part in _parts(obj))
    return checked
