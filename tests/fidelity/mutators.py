"""Mutators: one small function per class of wrong artifact, for each format, gathered in :data:`MUTATORS`.

Each mutator reads a correct artifact at ``source`` and writes a wrong one at ``target``. One that finds
nothing to change raises :class:`NothingToMutate`: a mutation that silently leaves the artifact as it was
would count as "caught" or "not observable" for the wrong reason.

ONNX artifacts are edited as ``onnx.ModelProto`` (operator attributes and initializers); PMML artifacts as
XML (``xml.etree.ElementTree``, every namespace of the file kept).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: A mutator: ``(source, target) -> None``, raising :class:`NothingToMutate` when it changes nothing.
Mutator = Callable[[Path, Path], None]

#: How far a moved tree threshold, a changed intercept or a changed coefficient goes, relative to its value.
RELATIVE_CHANGE = 0.1
#: A coefficient change that a float32 artifact must show (issue 8, item 6: "an ONNX logistic-regression
#: coefficient changed by 1e-5 relative is caught"); the judge calls it observable once the bands allow it.
SMALL_CHANGE = 1e-5


class NothingToMutate(ValueError):
    """The artifact has nothing this mutator changes (the mutation does not apply to it)."""


def _moved(value: float, relative: float = RELATIVE_CHANGE) -> float:
    """``value`` moved by ``relative`` of its magnitude (of 1 when it is smaller than 1)."""
    return value + relative * max(abs(value), 1.0)


# --- ONNX ----------------------------------------------------------------------------------------------

_TREES = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
_LINEAR = ("LinearClassifier", "LinearRegressor")
_SVM = ("SVMClassifier", "SVMRegressor")


def _attribute(node: onnx.NodeProto, name: str) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == name), None)


def _nodes(model: onnx.ModelProto, op_types: tuple[str, ...]) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in op_types]


def _set(node: onnx.NodeProto, name: str, value: object) -> None:
    old = _attribute(node, name)
    if old is not None:
        node.attribute.remove(old)
    node.attribute.append(helper.make_attribute(name, value))


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto | None:
    return next((t for t in model.graph.initializer if t.name == name), None)


def _replace_initializer(model: onnx.ModelProto, name: str, values: np.ndarray) -> None:
    old = _initializer(model, name)
    assert old is not None
    model.graph.initializer.remove(old)
    model.graph.initializer.append(
        numpy_helper.from_array(values.astype(numpy_helper.to_array(old).dtype), name)
    )


def _first_weight_initializer(model: onnx.ModelProto, op_type: str) -> tuple[str, np.ndarray] | None:
    """The initializer input of the first ``op_type`` node (MatMul: its weights; Add: its bias)."""
    for node in model.graph.node:
        if node.op_type == op_type:
            for name in node.input:
                tensor = _initializer(model, name)
                if tensor is not None:
                    return name, numpy_helper.to_array(tensor)
    return None


def _save(model: onnx.ModelProto, target: Path) -> None:
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def _float32_changed(before: list[float] | np.ndarray, after: list[float] | np.ndarray) -> bool:
    """Whether the change survives the float32 storage of ONNX attributes and initializers."""
    return bool(np.any(np.asarray(before, np.float32) != np.asarray(after, np.float32)))


def onnx_threshold(source: Path, target: Path) -> None:
    """Every split threshold of the first tree moved by :data:`RELATIVE_CHANGE` (``nodes_values``)."""
    model = onnx.load(str(source))
    changed = False
    for node in _nodes(model, _TREES):
        values = list(_attribute(node, "nodes_values").floats)
        trees = list(_attribute(node, "nodes_treeids").ints)
        modes = list(_attribute(node, "nodes_modes").strings)
        new = [
            _moved(v) if tree == trees[0] and mode != b"LEAF" else v
            for v, tree, mode in zip(values, trees, modes, strict=True)
        ]
        if _float32_changed(values, new):
            _set(node, "nodes_values", new)
            changed = True
            break
    if not changed:
        raise NothingToMutate(f"{source.name}: no tree ensemble with a split threshold")
    _save(model, target)


def _leaf_weights(node: onnx.NodeProto) -> tuple[str, list[float], list[tuple[int, int]]]:
    prefix = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
    weights = list(_attribute(node, f"{prefix}_weights").floats)
    leaves = list(
        zip(
            _attribute(node, f"{prefix}_treeids").ints,
            _attribute(node, f"{prefix}_nodeids").ints,
            strict=True,
        )
    )
    return f"{prefix}_weights", weights, leaves


def _changed_leaf(weights: list[float]) -> list[float]:
    """A leaf's weights rotated across its classes; a leaf of one weight negated."""
    return [-weights[0]] if len(weights) == 1 else list(np.roll(weights, 1))


def onnx_leaf(source: Path, target: Path) -> None:
    """The first leaf whose weights change when rotated across classes (or negated) changed so
    (``class_weights`` / ``target_weights``)."""
    model = onnx.load(str(source))
    for node in _nodes(model, _TREES):
        name, weights, leaves = _leaf_weights(node)
        for leaf in dict.fromkeys(leaves):
            positions = [i for i, key in enumerate(leaves) if key == leaf]
            new_values = _changed_leaf([weights[i] for i in positions])
            new = list(weights)
            for i, value in zip(positions, new_values, strict=True):
                new[i] = value
            if _float32_changed(weights, new):
                _set(node, name, new)
                _save(model, target)
                return
    raise NothingToMutate(f"{source.name}: no tree leaf whose weights can change")


def _coefficient_index(coefficients: np.ndarray) -> int:
    return int(np.argmax(np.abs(coefficients)))


def onnx_coefficient(source: Path, target: Path, relative: float = RELATIVE_CHANGE) -> None:
    """The largest coefficient (in magnitude) times ``1 + relative``: a linear operator's ``coefficients``
    (both rows of a binary classifier's ``[-w, w]``), an SVM's dual coefficients, else the first MatMul's
    weight initializer."""
    model = onnx.load(str(source))
    linear = _nodes(model, _LINEAR)
    if linear:
        node = linear[0]
        before = np.asarray(_attribute(node, "coefficients").floats, np.float64)
        rows = before.reshape(max(1, len(_attribute(node, "intercepts").floats)), -1)
        after = rows.copy()
        if rows.shape[0] == 2 and np.allclose(rows[0], -rows[1]):  # binary: class 1 and its mirror
            j = _coefficient_index(rows[1])
            after[1, j] *= 1 + relative
            after[0, j] = -after[1, j]
        else:
            i, j = np.unravel_index(_coefficient_index(rows.ravel()), rows.shape)
            after[i, j] *= 1 + relative
        if not _float32_changed(before, after.ravel()):
            raise NothingToMutate(f"{source.name}: a relative change of {relative:g} is lost in float32")
        _set(node, "coefficients", after.ravel().tolist())
        return _save(model, target)
    svm = _nodes(model, _SVM)
    if svm:  # dual coefficients: no row per class to keep in step
        before = np.asarray(_attribute(svm[0], "coefficients").floats, np.float64)
        after = before.copy()
        after[_coefficient_index(after)] *= 1 + relative
        if not _float32_changed(before, after):
            raise NothingToMutate(f"{source.name}: a relative change of {relative:g} is lost in float32")
        _set(svm[0], "coefficients", after.tolist())
        return _save(model, target)
    found = _first_weight_initializer(model, "MatMul")
    if found is None:
        raise NothingToMutate(f"{source.name}: no linear or SVM operator and no MatMul weights")
    name, weights = found
    changed = weights.astype(np.float64).copy()
    flat = changed.reshape(-1)
    flat[_coefficient_index(flat)] *= 1 + relative
    if not _float32_changed(weights, changed):
        raise NothingToMutate(f"{source.name}: a relative change of {relative:g} is lost in float32")
    _replace_initializer(model, name, changed)
    _save(model, target)


def onnx_small_coefficient(source: Path, target: Path) -> None:
    """The largest coefficient times ``1 + SMALL_CHANGE`` (see :func:`onnx_coefficient`)."""
    onnx_coefficient(source, target, relative=SMALL_CHANGE)


def onnx_intercept(source: Path, target: Path) -> None:
    """Every intercept of the first linear operator, an SVM's ``rho``, a tree ensemble's ``base_values``, or
    the first Add's bias initializer, moved by :data:`RELATIVE_CHANGE`."""
    model = onnx.load(str(source))
    names = {
        **dict.fromkeys(_LINEAR, "intercepts"),
        **dict.fromkeys(_SVM, "rho"),
        **dict.fromkeys(_TREES, "base_values"),
    }
    for node in _nodes(model, tuple(names)):
        name = names[node.op_type]
        attribute = _attribute(node, name)
        if attribute is not None and len(attribute.floats):
            _set(node, name, [_moved(v) for v in attribute.floats])
            return _save(model, target)
    found = _first_weight_initializer(model, "Add")
    if found is None:
        raise NothingToMutate(f"{source.name}: no intercept, base value or bias")
    name, bias = found
    _replace_initializer(model, name, np.vectorize(_moved)(bias.astype(np.float64)))
    _save(model, target)


def onnx_class_labels(source: Path, target: Path) -> None:
    """The first two class labels swapped (``classlabels_*``, or the ``classes`` initializer of a graph that
    looks its label up)."""
    model = onnx.load(str(source))
    for node in model.graph.node:
        for name in ("classlabels_ints", "classlabels_int64s", "classlabels_strings"):
            attribute = _attribute(node, name)
            if attribute is not None and len(attribute.ints or attribute.strings) >= 2:
                labels = list(attribute.ints or attribute.strings)
                labels[0], labels[1] = labels[1], labels[0]
                _set(node, name, labels)
                return _save(model, target)
    classes = _initializer(model, "classes")
    if classes is None or numpy_helper.to_array(classes).size < 2:
        raise NothingToMutate(f"{source.name}: no class labels")
    labels = numpy_helper.to_array(classes).copy()
    labels[[0, 1]] = labels[[1, 0]]
    _replace_initializer(model, "classes", labels)
    _save(model, target)


def onnx_columns(source: Path, target: Path, output: str = "probabilities") -> None:
    """The first two columns of the ``probabilities`` output swapped (a Gather on axis 1 before the output);
    everything inside the graph still reads the unswapped tensor."""
    model = onnx.load(str(source))
    outputs = [o for o in model.graph.output if o.name == output]
    if not outputs:
        raise NothingToMutate(f"{source.name}: no {output!r} output")
    inner = f"{output}_unswapped"
    for node in model.graph.node:
        node.output[:] = [inner if name == output else name for name in node.output]
        node.input[:] = [inner if name == output else name for name in node.input]
    n_columns = outputs[0].type.tensor_type.shape.dim[1].dim_value
    order = list(range(max(2, n_columns)))
    order[0], order[1] = 1, 0
    model.graph.initializer.append(numpy_helper.from_array(np.array(order, np.int64), "swapped_columns"))
    model.graph.node.append(helper.make_node("Gather", [inner, "swapped_columns"], [output], axis=1))
    _save(model, target)


def onnx_dropped_output(source: Path, target: Path, output: str = "probabilities") -> None:
    """The ``probabilities`` output removed from the graph (its node still computes it): an artifact that
    gives labels only."""
    model = onnx.load(str(source))
    outputs = [o for o in model.graph.output if o.name == output]
    if not outputs:
        raise NothingToMutate(f"{source.name}: no {output!r} output")
    model.graph.output.remove(outputs[0])
    _save(model, target)


#: A wrong post-transform: what each correct one becomes.
_WRONG_POST_TRANSFORM = {b"LOGISTIC": "NONE", b"SOFTMAX": "NONE", b"SOFTMAX_ZERO": "NONE", b"PROBIT": "NONE"}


def onnx_post_transform(source: Path, target: Path) -> None:
    """The first operator's post-transform dropped (``LOGISTIC``/``SOFTMAX`` → ``NONE``), or a Softmax/Sigmoid
    node replaced by Identity."""
    model = onnx.load(str(source))
    for node in model.graph.node:
        attribute = _attribute(node, "post_transform")
        if attribute is not None and attribute.s in _WRONG_POST_TRANSFORM:
            _set(node, "post_transform", _WRONG_POST_TRANSFORM[attribute.s])
            return _save(model, target)
    for node in model.graph.node:
        if node.op_type in ("Softmax", "Sigmoid"):
            node.op_type = "Identity"
            del node.attribute[:]
            return _save(model, target)
    raise NothingToMutate(f"{source.name}: no post-transform other than NONE")


def onnx_nan_handling(source: Path, target: Path) -> None:
    """Every split's missing-value direction flipped (``nodes_missing_value_tracks_true``)."""
    model = onnx.load(str(source))
    for node in _nodes(model, _TREES):
        tracks = _attribute(node, "nodes_missing_value_tracks_true")
        modes = list(_attribute(node, "nodes_modes").strings)
        if tracks is not None:
            flipped = [t if mode == b"LEAF" else 1 - t for t, mode in zip(tracks.ints, modes, strict=True)]
            _set(node, "nodes_missing_value_tracks_true", flipped)
            return _save(model, target)
    raise NothingToMutate(f"{source.name}: no tree ensemble with missing-value directions")


# --- PMML ----------------------------------------------------------------------------------------------


def _read_pmml(source: Path) -> ET.ElementTree:
    """The document, with every namespace prefix of the file registered so it is written back as it was."""
    text = source.read_bytes()
    for _, (prefix, uri) in ET.iterparse(io.BytesIO(text), events=("start-ns",)):
        ET.register_namespace(prefix, uri)
    return ET.ElementTree(ET.fromstring(text))


def _local(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2]


def _all(root: ET.Element, name: str) -> Iterator[ET.Element]:
    return (e for e in root.iter() if _local(e) == name)


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element if _local(e) == name]


def _write_pmml(tree: ET.ElementTree, target: Path) -> None:
    tree.write(target, encoding="UTF-8", xml_declaration=True)


def _first_tree(root: ET.Element) -> ET.Element:
    tree = next(_all(root, "TreeModel"), None)
    if tree is None:
        raise NothingToMutate("no TreeModel")
    return tree


def pmml_threshold(source: Path, target: Path) -> None:
    """Every split threshold of the first TreeModel moved by :data:`RELATIVE_CHANGE` (``SimplePredicate``
    ``value``; a pair of predicates on one split moves together)."""
    tree = _read_pmml(source)
    predicates = [p for p in _all(_first_tree(tree.getroot()), "SimplePredicate") if p.get("value")]
    if not predicates:
        raise NothingToMutate(f"{source.name}: no split predicate")
    for predicate in predicates:
        predicate.set("value", repr(_moved(float(predicate.get("value")))))
    _write_pmml(tree, target)


def _is_leaf(node: ET.Element) -> bool:
    return not _children(node, "Node")


def pmml_leaf(source: Path, target: Path) -> None:
    """The first leaf that can change: its class distribution rotated (and its score the new majority), or
    its score negated."""
    tree = _read_pmml(source)
    for node in filter(_is_leaf, _all(tree.getroot(), "Node")):
        distribution = _children(node, "ScoreDistribution")
        if distribution:
            if any(d.get("probability") is not None for d in distribution):
                raise NothingToMutate(f"{source.name}: ScoreDistribution with probabilities: not handled")
            counts = [d.get("recordCount") for d in distribution]
            rotated = list(np.roll(counts, 1))
            if rotated == counts:
                continue
            for element, count in zip(distribution, rotated, strict=True):
                element.set("recordCount", count)
            node.set("score", distribution[int(np.argmax([float(c) for c in rotated]))].get("value"))
        elif node.get("score") not in (None, "0", "0.0"):
            node.set("score", repr(-float(node.get("score"))))
        else:
            continue
        return _write_pmml(tree, target)
    raise NothingToMutate(f"{source.name}: no leaf that can change")


def _coefficients(root: ET.Element) -> list[tuple[ET.Element, str]]:
    """Every coefficient of the document: regression tables' predictors, else neural connections, else
    support vector machines' coefficients."""
    found = [(p, "coefficient") for p in _all(root, "NumericPredictor")]
    found = found or [(c, "weight") for c in _all(root, "Con")]
    return found or [(c, "value") for c in _all(root, "Coefficient")]


def pmml_coefficient(source: Path, target: Path, relative: float = RELATIVE_CHANGE) -> None:
    """The largest coefficient (in magnitude) times ``1 + relative``: a ``NumericPredictor`` of a
    RegressionTable, else a neuron's ``Con`` weight, else a support vector's ``Coefficient``."""
    tree = _read_pmml(source)
    found = _coefficients(tree.getroot())
    if not found:
        raise NothingToMutate(f"{source.name}: no coefficient")
    values = [float(e.get(name)) for e, name in found]
    i = _coefficient_index(np.asarray(values))
    element, name = found[i]
    new = values[i] * (1 + relative)
    if new == values[i]:
        raise NothingToMutate(f"{source.name}: a relative change of {relative:g} is lost in float64")
    element.set(name, repr(new))
    _write_pmml(tree, target)


def pmml_small_coefficient(source: Path, target: Path) -> None:
    """The largest coefficient times ``1 + SMALL_CHANGE`` (see :func:`pmml_coefficient`)."""
    pmml_coefficient(source, target, relative=SMALL_CHANGE)


def pmml_intercept(source: Path, target: Path) -> None:
    """The first intercept of the document moved by :data:`RELATIVE_CHANGE`: a RegressionTable's
    ``intercept``, a Target's ``rescaleConstant``, a Neuron's ``bias`` or a support vector machine's
    ``absoluteValue``, whichever comes first."""
    tree = _read_pmml(source)
    attributes = {
        "RegressionTable": "intercept",
        "Target": "rescaleConstant",
        "Neuron": "bias",
        "Coefficients": "absoluteValue",
    }
    for element in tree.getroot().iter():
        name = attributes.get(_local(element))
        if name and element.get(name) is not None:
            element.set(name, repr(_moved(float(element.get(name)))))
            return _write_pmml(tree, target)
    raise NothingToMutate(f"{source.name}: no intercept, rescale constant or bias")


def _target_categories(root: ET.Element) -> list[str]:
    fields = [f for f in _all(root, "DataField") if f.get("optype") == "categorical"]
    target = next((m.get("name") for m in _all(root, "MiningField") if m.get("usageType") == "target"), None)
    for field in fields:
        if field.get("name") == target:
            return [v.get("value") for v in _children(field, "Value")]
    return []


def pmml_class_labels(source: Path, target: Path) -> None:
    """The first two target categories swapped wherever the model scores them (RegressionTable
    ``targetCategory``, ScoreDistribution ``value`` and classification Node ``score``, a neural output's
    NormDiscrete ``value``, a support vector machine's target and alternate categories), not in the data
    dictionary or the output fields."""
    tree = _read_pmml(source)
    root = tree.getroot()
    categories = _target_categories(root)
    if len(categories) < 2:
        raise NothingToMutate(f"{source.name}: no categorical target with two categories")
    swap = {categories[0]: categories[1], categories[1]: categories[0]}
    targets = [(t, "targetCategory") for t in _all(root, "RegressionTable")]
    targets += [(d, "value") for d in _all(root, "ScoreDistribution")]
    for machine in _all(root, "SupportVectorMachine"):
        targets += [(machine, "targetCategory"), (machine, "alternateTargetCategory")]
    targets += [(d, "value") for o in _all(root, "NeuralOutput") for d in _all(o, "NormDiscrete")]
    for model in _all(root, "TreeModel"):
        if model.get("functionName") == "classification":
            targets += [(n, "score") for n in _all(model, "Node")]
    changed = 0
    for element, name in targets:
        if element.get(name) in swap:
            element.set(name, swap[element.get(name)])
            changed += 1
    if not changed:
        raise NothingToMutate(f"{source.name}: the model scores no target category")
    _write_pmml(tree, target)


def pmml_columns(source: Path, target: Path) -> None:
    """The first two probability output fields swapped (their ``value``): ``probability(0)`` reports the
    second class's probability and the reverse."""
    tree = _read_pmml(source)
    fields = [
        f for f in _all(tree.getroot(), "OutputField") if f.get("feature") == "probability" and f.get("value")
    ]
    if len(fields) < 2:
        raise NothingToMutate(f"{source.name}: fewer than two probability output fields")
    first, second = fields[0].get("value"), fields[1].get("value")
    fields[0].set("value", second)
    fields[1].set("value", first)
    _write_pmml(tree, target)


def pmml_dropped_output(source: Path, target: Path) -> None:
    """Every probability output field removed (an ``<Output>`` left empty goes too): a PMML that gives the
    predicted label only."""
    tree = _read_pmml(source)
    removed = 0
    for parent in list(tree.getroot().iter()):
        for output in _children(parent, "Output"):
            for field in _children(output, "OutputField"):
                if field.get("feature") == "probability":
                    output.remove(field)
                    removed += 1
            if not len(output):
                parent.remove(output)
    if not removed:
        raise NothingToMutate(f"{source.name}: no probability output field")
    _write_pmml(tree, target)


#: A wrong normalization: what each correct one becomes (valid PMML, so the model still evaluates).
_WRONG_NORMALIZATION = {"logit": "probit", "softmax": "simplemax", "probit": "logit", "simplemax": "softmax"}


def pmml_post_transform(source: Path, target: Path) -> None:
    """The first ``normalizationMethod`` replaced by another valid one (logit → probit, softmax →
    simplemax)."""
    tree = _read_pmml(source)
    for element in tree.getroot().iter():
        method = element.get("normalizationMethod")
        if method in _WRONG_NORMALIZATION:
            element.set("normalizationMethod", _WRONG_NORMALIZATION[method])
            return _write_pmml(tree, target)
    raise NothingToMutate(f"{source.name}: no normalizationMethod other than none")


#: A wrong strategy for missing values: what each becomes.
_WRONG_MISSING = {
    "nullPrediction": "lastPrediction",
    "lastPrediction": "nullPrediction",
    "defaultChild": "lastPrediction",
    "none": "lastPrediction",
}


def pmml_nan_handling(source: Path, target: Path) -> None:
    """Missing values sent the wrong way: every ``defaultChild`` pointed at its other child; in trees without
    default children, the ``missingValueStrategy`` changed (nullPrediction → lastPrediction)."""
    tree = _read_pmml(source)
    root = tree.getroot()
    changed = False
    for node in _all(root, "Node"):
        ids = [child.get("id") for child in _children(node, "Node")]
        if node.get("defaultChild") is not None and node.get("defaultChild") in ids and len(ids) == 2:
            node.set("defaultChild", ids[1 - ids.index(node.get("defaultChild"))])
            changed = True
    if not changed:
        for model in _all(root, "TreeModel"):
            strategy = model.get("missingValueStrategy", "none")
            model.set("missingValueStrategy", _WRONG_MISSING[strategy])
            changed = True
    if not changed:
        raise NothingToMutate(f"{source.name}: no tree to send missing values elsewhere")
    _write_pmml(tree, target)


#: format → mutation class → mutator. The classes are those of issue 8: moved thresholds, changed leaves,
#: coefficients and intercepts, swapped labels and columns, wrong post-transforms, NaN handling; and its
#: "silent gap", an artifact without its probabilities.
MUTATORS: dict[str, dict[str, Mutator]] = {
    "onnx": {
        "threshold": onnx_threshold,
        "leaf": onnx_leaf,
        "coefficient": onnx_coefficient,
        "small-coefficient": onnx_small_coefficient,
        "intercept": onnx_intercept,
        "class-labels": onnx_class_labels,
        "columns": onnx_columns,
        "dropped-output": onnx_dropped_output,
        "post-transform": onnx_post_transform,
        "nan-handling": onnx_nan_handling,
    },
    "pmml": {
        "threshold": pmml_threshold,
        "leaf": pmml_leaf,
        "coefficient": pmml_coefficient,
        "small-coefficient": pmml_small_coefficient,
        "intercept": pmml_intercept,
        "class-labels": pmml_class_labels,
        "columns": pmml_columns,
        "dropped-output": pmml_dropped_output,
        "post-transform": pmml_post_transform,
        "nan-handling": pmml_nan_handling,
    },
}
