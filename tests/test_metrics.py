"""cnnkit.metrics: streaming over uneven batches equals the whole dataset at once, counts against
hand-computed and textbook (scikit-learn's definitions, written here) values, "accuracy" resolution,
confusion_matrix, bad inputs."""

import numpy as np
import pytest

from cnnkit import losses, metrics

SPLITS = [0, 1, 7, 7, 20, 29, 30, 30, 64]  # batch boundaries: uneven, with empty batches


def dataset(rng, n=64, k=5, tie=True):
    scores = rng.random((n, k))
    if tie:  # argmax takes the first; F1Score(threshold=None) predicts both, as Keras does
        scores[3, 1] = scores[3, 2] = 0.999
    ids = rng.integers(0, k, n)
    scores[0, 0] = 0.9  # column 0 has a positive prediction whatever the seed
    ids[:12] = scores[:12].argmax(-1)  # and some hits
    return ids, scores


def streamed(metric, y_true, y_pred, xp=np):
    for a, b in zip(SPLITS, SPLITS[1:]):
        metric.update_state(y_true[a:b], xp.asarray(y_pred[a:b]))
    return metric.result()


def one_shot(metric, y_true, y_pred):
    metric.reset_state()
    metric.update_state(y_true, y_pred)
    return metric.result()


def per_class_counts(ids, pred, k):
    """tp, fp, fn per class by loops over the samples."""
    tp, fp, fn = np.zeros(k), np.zeros(k), np.zeros(k)
    for t, p in zip(ids, pred):
        if t == p:
            tp[t] += 1
        else:
            fp[p] += 1
            fn[t] += 1
    return tp, fp, fn


def ratio(a, b):  # scikit-learn's zero_division=0
    return np.array([x / y if y else 0.0 for x, y in zip(a, b)])


@pytest.mark.parametrize("make", [
    lambda: metrics.SparseCategoricalAccuracy(), lambda: metrics.SparseTopKCategoricalAccuracy(k=2),
    lambda: metrics.Precision(average="macro"), lambda: metrics.Recall(average="macro"),
    lambda: metrics.F1Score(average="macro"), lambda: metrics.F1Score(average="micro"),
    lambda: metrics.F1Score(average="weighted"), lambda: metrics.F1Score(threshold=0.5),
    lambda: metrics.get("accuracy")])
def test_streaming_equals_one_shot_exactly(xp, rng, make):
    ids, scores = dataset(rng)
    metric = make()
    result = streamed(metric, ids, scores, xp)
    assert np.array_equal(result, one_shot(make(), ids, scores))
    metric.reset_state()
    assert np.array_equal(streamed(metric, ids[:, None], scores, xp), result)  # (N, 1) labels, after a reset


@pytest.mark.parametrize("make", [
    lambda: metrics.CategoricalAccuracy(), lambda: metrics.TopKCategoricalAccuracy(k=3),
    lambda: metrics.Accuracy(), lambda: metrics.BinaryAccuracy(threshold=0.3),
    lambda: metrics.Precision(), lambda: metrics.Recall(thresholds=[0.2, 0.7]),
    lambda: metrics.Precision(class_id=1), lambda: metrics.F1Score()])
def test_streaming_equals_one_shot_with_dense_labels(xp, rng, make):
    ids, scores = dataset(rng)
    labels = np.eye(5)[ids]
    assert np.array_equal(streamed(make(), labels, scores, xp), one_shot(make(), labels, scores))


def test_accuracies_against_counts(rng):
    ids, scores = dataset(rng)
    hits = ids == scores.argmax(-1)
    assert metrics.SparseCategoricalAccuracy()(ids, scores) == hits.sum() / 64
    assert metrics.CategoricalAccuracy()(np.eye(5)[ids], scores) == hits.sum() / 64
    rank = (scores > scores[np.arange(64), ids][:, None]).sum(-1)  # classes strictly above the label
    assert metrics.SparseTopKCategoricalAccuracy(k=2)(ids, scores) == (rank < 2).sum() / 64
    t = rng.integers(0, 2, (64, 3))
    assert metrics.BinaryAccuracy()(t, scores[:, :3]) == ((scores[:, :3] > 0.5) == t).sum() / 192
    assert metrics.Accuracy()([1, 2, 3, 4], np.array([1.0, 2.0, 0.0, 4.0])) == 0.75
    assert metrics.BinaryAccuracy()(np.array([1, 0, 1]), np.array([[0.5], [0.2], [0.9]])) == 2 / 3


def test_top_k_counts_ties_at_the_boundary_as_hits():
    y = np.array([[0.1, 0.5, 0.5, 0.5], [0.4, 0.3, 0.2, 0.1]])
    assert metrics.SparseTopKCategoricalAccuracy(k=1)([3, 1], y) == 0.5
    assert metrics.SparseTopKCategoricalAccuracy(k=5)([0, 3], y) == 1.0


def test_sample_weight_weights_each_sample(rng):
    ids, scores = dataset(rng, n=10, tie=False)
    w = rng.random(10)
    hits = ids == scores.argmax(-1)
    assert abs(metrics.SparseCategoricalAccuracy()(ids, scores, w) - (hits * w).sum() / w.sum()) < 1e-15
    t = rng.integers(0, 2, (10, 3))
    per_sample = ((scores[:, :3] > 0.5) == t).mean(-1)
    assert abs(metrics.BinaryAccuracy()(t, scores[:, :3], w) - (per_sample * w).sum() / w.sum()) < 1e-15
    pos, pred = t[:, 0] == 1, scores[:, 0] > 0.5
    precision = (w * (pred & pos)).sum() / (w * pred).sum()
    assert abs(metrics.Precision()(t[:, 0], scores[:, 0], w) - precision) < 1e-15
    cm = np.zeros((5, 5))
    for i, (a, b) in enumerate(zip(ids, scores.argmax(-1))):
        cm[a, b] += w[i]
    recall = ratio(np.diag(cm), cm.sum(1)).mean()
    assert abs(metrics.Recall(average="macro")(ids, scores, w) - recall) < 1e-15
    f1 = ratio(2 * np.diag(cm), cm.sum(0) + cm.sum(1))  # 2 tp / (2 tp + fp + fn), per class
    assert np.allclose(metrics.F1Score()(ids, scores, w), f1, rtol=1e-15, atol=0)
    m = metrics.Mean()
    m.update_state(np.array([1.0, 2.0, 4.0]), sample_weight=np.array([1.0, 0.0, 3.0]))
    m.update_state(0.5, sample_weight=4)  # a batch's mean loss weighted by its size
    assert m.result() == (1 + 12 + 2) / 8


def test_mean_of_a_function_over_batches(rng):
    y_true, y_pred = rng.standard_normal((64, 3)), rng.standard_normal((64, 3))
    for name, f in (("mse", lambda d: d * d), ("mae", np.abs)):
        metric = metrics.get(name)
        assert metric.name == name
        expected = f(y_pred - y_true).mean()
        assert abs(streamed(metric, y_true, y_pred) - expected) <= 1e-15 * expected
    assert metrics.Mean().result() == 0.0


# ---- precision / recall / F1 -----------------------------------------------------------------------

def test_binary_precision_and_recall_by_hand():
    y_true, y_pred = np.array([0, 1, 1, 1]), np.array([1.0, 0.0, 1.0, 1.0])  # tp 2, fp 1, fn 1
    assert metrics.Precision()(y_true, y_pred) == 2 / 3
    assert metrics.Recall()(y_true, y_pred) == 2 / 3
    scores = np.array([0.9, 0.6, 0.4, 0.55])  # > 0.5 strictly: predicted positive [1, 1, 0, 1]
    assert metrics.Precision()(y_true, scores) == 2 / 3 and metrics.Recall()(y_true, scores) == 2 / 3
    assert metrics.Precision(thresholds=[0.0, 0.58, 0.95])(y_true, scores) == [3 / 4, 1 / 2, 0.0]
    assert metrics.Recall(thresholds=[0.0, 0.58])(y_true, scores) == [1.0, 1 / 3]
    # class_id: only column 1 counts
    multi_true = np.array([[0, 1], [1, 1], [0, 0]])
    multi_pred = np.array([[0.9, 0.8], [0.1, 0.3], [0.7, 0.6]])  # column 1: tp 1, fp 1, fn 1
    assert metrics.Precision(class_id=1)(multi_true, multi_pred) == 0.5
    assert metrics.Recall(class_id=1)(multi_true, multi_pred) == 0.5
    assert metrics.Precision()(multi_true, multi_pred) == 1 / 4  # pooled: tp 1, fp 3


def test_macro_precision_recall_f1_against_textbook_formulas(rng):
    ids, scores = dataset(rng, n=40, k=4, tie=False)
    ids[ids == 3] = 0  # class 3 has no true sample: its recall is 0 (zero_division=0)
    pred = scores.argmax(-1)
    tp, fp, fn = per_class_counts(ids, pred, 4)
    p, r = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    assert metrics.Precision(average="macro")(ids, scores) == pytest.approx(p.mean(), rel=1e-15)
    assert metrics.Recall(average="macro")(np.eye(4)[ids], scores) == pytest.approx(r.mean(), rel=1e-15)
    assert np.allclose(metrics.F1Score()(ids, scores), f1, rtol=1e-15, atol=0)
    support = np.bincount(ids, minlength=4)
    assert metrics.F1Score("weighted")(ids, scores) == pytest.approx((f1 * support).sum() / 40, rel=1e-15)
    assert metrics.F1Score("micro")(ids, scores) == pytest.approx((ids == pred).mean(), rel=1e-15)


def test_f1_keras_example():
    y_true = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    y_pred = np.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]])
    # > 0.5: class 0 tp 1 fn 2; class 1 tp 2 fp 1; class 2 tp 1 fp 1
    assert np.allclose(metrics.F1Score(threshold=0.5)(y_true, y_pred), [2 / 4, 4 / 5, 2 / 3], rtol=1e-15)
    assert metrics.F1Score(average="micro", threshold=0.5)(y_true, y_pred) == 8 / 12
    assert metrics.F1Score(average="macro")(np.zeros((1, 3)), np.zeros((1, 3))) == 0.0  # nothing anywhere
    # threshold=None: every maximum of a row is predicted (Keras), a row of zeros predicts nothing
    f1 = metrics.F1Score()([1, 0], np.array([[0.0, 0.4, 0.4], [0.0, 0.0, 0.0]]))
    assert np.array_equal(f1, [0.0, 1.0, 0.0])  # class 0: fn 1; class 1: tp 1; class 2: fp 1


def test_against_scikit_learn(rng):
    sk = pytest.importorskip("sklearn.metrics")
    ids, scores = dataset(rng, n=50, k=6, tie=False)
    pred, labels = scores.argmax(-1), list(range(6))
    for cls, f in ((metrics.Precision, sk.precision_score), (metrics.Recall, sk.recall_score)):
        assert cls(average="macro")(ids, scores) == pytest.approx(
            f(ids, pred, labels=labels, average="macro", zero_division=0), rel=1e-14)
    for average in ("micro", "macro", "weighted", None):
        expected = sk.f1_score(ids, pred, labels=labels, average=average, zero_division=0)
        assert np.allclose(metrics.F1Score(average)(ids, scores), expected, rtol=1e-14)
    expected = sk.confusion_matrix(ids, pred, labels=labels)
    assert np.array_equal(metrics.confusion_matrix(ids, scores), expected)


# ---- confusion matrix -----------------------------------------------------------------------------

def test_confusion_matrix(xp):
    y_true = np.array([0, 1, 2, 2, 1])
    y_pred = np.array([0, 2, 2, 2, 1])
    expected = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 2]])
    cm = metrics.confusion_matrix(y_true, xp.asarray(y_pred))
    assert cm.dtype == np.int64 and isinstance(cm, np.ndarray) and np.array_equal(cm, expected)
    scores = xp.asarray(np.eye(3)[y_pred] * 0.8 + 0.05)
    assert np.array_equal(metrics.confusion_matrix(np.eye(3)[y_true], scores), expected)
    assert np.array_equal(metrics.confusion_matrix(y_true[:, None], y_pred, num_classes=4)[:3, :3], expected)
    assert metrics.confusion_matrix(y_true[:0], y_pred[:0], num_classes=2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\).*received label 2 at index 2"):
        metrics.confusion_matrix(y_true, y_pred, num_classes=2)
    with pytest.raises(ValueError, match="integer class ids"):
        metrics.confusion_matrix(np.array([0.0, 1.5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="different numbers of samples"):
        metrics.confusion_matrix(y_true[:4], y_pred)


# ---- get / resolution / config ------------------------------------------------------------------------

@pytest.mark.parametrize("loss, cls", [
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy),
    (losses.sparse_categorical_crossentropy, metrics.SparseCategoricalAccuracy),
    (losses.CategoricalCrossentropy(from_logits=True), metrics.CategoricalAccuracy),
    ("binary_crossentropy", metrics.BinaryAccuracy)])
def test_accuracy_follows_the_loss(loss, cls):
    for name in ("accuracy", "acc"):
        metric = metrics.get(name, loss=loss, output_shape=(None, 10))
        assert type(metric) is cls and metric.name == name


def test_accuracy_follows_the_shapes_without_a_known_loss(rng):
    assert type(metrics.get("accuracy", loss="mse", output_shape=(None, 1))) is metrics.BinaryAccuracy
    ids, scores = dataset(rng)
    cases = [(ids, scores, metrics.SparseCategoricalAccuracy),
             (ids[:, None], scores, metrics.SparseCategoricalAccuracy),
             (np.eye(5)[ids], scores, metrics.CategoricalAccuracy),
             (ids % 2, scores[:, :1], metrics.BinaryAccuracy)]
    for y_true, y_pred, cls in cases:
        metric = metrics.get("accuracy", loss=lambda a, b: a)  # a loss cnnkit cannot name
        assert metric.result() == 0.0 and metric.name == "accuracy"
        metric.update_state(y_true, y_pred)
        assert type(metric.resolved) is cls
        assert metric.result() == one_shot(cls(), y_true, y_pred)


def test_get_names_instances_and_functions():
    for name, cls in [("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy),
                      ("categorical_accuracy", metrics.CategoricalAccuracy),
                      ("binary_accuracy", metrics.BinaryAccuracy),
                      ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
                      ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
                      ("precision", metrics.Precision), ("recall", metrics.Recall),
                      ("f1_score", metrics.F1Score)]:
        metric = metrics.get(name)
        assert type(metric) is cls and metric.name == name
    m = metrics.Recall(class_id=2)
    assert metrics.get(m) is m

    def hinge(y_true, y_pred):
        return np.maximum(0, 1 - y_true * y_pred).mean(-1)

    wrapped = metrics.get(hinge)
    assert type(wrapped) is metrics.MeanMetricWrapper and wrapped.name == "hinge"
    assert wrapped(np.array([[1.0], [-1.0]]), np.array([[0.5], [0.5]])) == 1.0
    with pytest.raises(ValueError, match="unknown metric 'acuracy'; known: .*sparse_categorical_accuracy"):
        metrics.get("acuracy")


@pytest.mark.parametrize("metric", [
    metrics.BinaryAccuracy(threshold=0.7, name="b"), metrics.SparseTopKCategoricalAccuracy(k=3),
    metrics.Precision(thresholds=[0.3, 0.6], class_id=1), metrics.Recall(average="macro"),
    metrics.F1Score(average="weighted", threshold=0.4), metrics.get("mae"), metrics.Mean(name="loss")])
def test_serialize_round_trip(metric):
    again = metrics.deserialize(metrics.serialize(metric))
    assert type(again) is type(metric) and again.get_config() == metric.get_config()


def test_bad_inputs_raise_before_the_state_changes(rng):
    ids, scores = dataset(rng, n=8, k=3)
    binary, probs = ids % 2, scores[:, 0]
    label_3 = ids.copy()
    label_3[0] = 3  # out of range for 3 classes, whatever labels the draw produced
    for metric, good, bad, match in [
        (metrics.SparseCategoricalAccuracy(), (ids, scores), (label_3, scores),
         r"\[0, 3\).*received label 3"),
        (metrics.SparseCategoricalAccuracy(), (ids, scores), (np.eye(3)[ids], scores), "non-sparse"),
        (metrics.CategoricalAccuracy(), (np.eye(3)[ids], scores), (ids, scores), "sparse"),
        (metrics.Precision(), (binary, probs), (binary, probs * 3), r"probabilities in \[0, 1\]"),
        (metrics.Precision(), (binary, probs), (ids, scores), "average='macro'"),
        (metrics.Precision(average="macro"), (ids, scores), (ids, scores[:, :1]), "classes > 1"),
        (metrics.F1Score(), (ids, scores), (ids + 0.5, scores), "integer class ids"),
        (metrics.F1Score(), (ids, scores), (label_3, scores), r"\[0, 3\)"),
        (metrics.F1Score(), (ids, scores), (ids, scores[:, :2]), "3 classes before"),
    ]:
        metric.update_state(*good)
        before = metric.result()
        with pytest.raises(ValueError, match=match):
            metric.update_state(*bad)
        assert np.array_equal(metric.result(), before)


def test_bad_arguments():
    for make, match in [(lambda: metrics.Precision(average="micro"), "average='micro'"),
                        (lambda: metrics.Precision(thresholds=1.5), "thresholds=1.5"),
                        (lambda: metrics.Recall(average="macro", class_id=1), "class_id=1"),
                        (lambda: metrics.F1Score(average="samples"), "average='samples'"),
                        (lambda: metrics.F1Score(threshold=0), "threshold=0"),
                        (lambda: metrics.SparseTopKCategoricalAccuracy(k=0), "k=0"),
                        (lambda: metrics.confusion_matrix([0], [0], num_classes=0), "num_classes=0")]:
        with pytest.raises(ValueError, match=match):
            make()
