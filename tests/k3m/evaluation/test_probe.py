"""The probe on real item vectors (frozen MiniLM title features of the fashion600 slice):
a logistic regression tuned on a validation split by product, at least as good as the Adam
head it replaces, and the head kept where a task has no linear form."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from k3m.evaluation.corruption import product_keys
from k3m.evaluation.pools import make_pools
from k3m.evaluation.probe import ProbeConfig, _validation_split, gather, train_probe
from k3m.evaluation.tasks import AlignmentTask, AttributeQATask, ClassificationTask


@pytest.fixture(scope="module")
def setup(slice_build, frozen_slice_index):
    pools = make_pools(slice_build, 300, None, seed=0)
    rows = np.union1d(pools.finetune, pools.test)
    vectors = torch.from_numpy(frozen_slice_index.features.title_vectors(rows))
    return slice_build, pools, rows, vectors, product_keys(slice_build, np.arange(slice_build.num_items))


def fit_and_measure(task, setup, config):
    build, pools, rows, vectors, product = setup
    task.prepare(build, pools, seed=0)
    probe = train_probe(task, gather(vectors, rows, task.train), vectors, config, seed=0, groups=product[task.train.rows[:, 0]])
    return probe, probe.measure(task, gather(vectors, rows, task.test))


def test_logistic_probe_is_at_least_as_good_as_the_adam_head(setup):
    logistic, tuned = fit_and_measure(ClassificationTask(), setup, ProbeConfig(kind="logistic"))
    _, head = fit_and_measure(ClassificationTask(), setup, ProbeConfig(kind="head"))
    assert logistic.describe()["kind"] == "logistic" and logistic.describe()["converged"]
    assert logistic.c in ProbeConfig().c_grid
    assert tuned["accuracy"] > 0.6  # MiniLM titles name the article type
    assert tuned["accuracy"] >= head["accuracy"] - 0.02


def test_the_chosen_c_is_the_best_on_validation_not_on_test(setup):
    task = ClassificationTask()
    probe, _ = fit_and_measure(task, setup, ProbeConfig(kind="logistic", c_grid=[1e-6, 0.1]))
    assert probe.c == 0.1  # 1e-6 shrinks every weight to nothing: the validation split sees it


def test_validation_split_keeps_a_product_on_one_side(setup):
    build, pools, *_ , product = setup
    groups = product[pools.finetune]
    fit, valid = _validation_split(np.zeros(len(groups)), groups, 0.2, seed=0)
    assert len(valid) and len(fit)
    assert not set(groups[fit]) & set(groups[valid])
    assert 0.1 < len(valid) / len(groups) < 0.3


def test_alignment_has_a_linear_form_and_qa_keeps_its_head(setup):
    probe, metrics = fit_and_measure(AlignmentTask(), setup, ProbeConfig())
    assert probe.describe()["kind"] == "logistic" and 0.0 <= metrics["f1"] <= 1.0
    qa, _ = fit_and_measure(AttributeQATask(), setup, ProbeConfig(epochs=2))
    assert qa.describe() == {"kind": "head"}
    with pytest.raises(ValueError, match="no linear form"):
        fit_and_measure(AttributeQATask(), setup, ProbeConfig(kind="logistic"))


def test_unknown_probe_kind_is_refused():
    with pytest.raises(ValueError, match="probe.kind"):
        ProbeConfig(kind="svm")
