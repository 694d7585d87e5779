"""Downstream evaluation of K3M and its baselines under missing/noise corruption
(`k3m evaluate`, docs/evaluate.md).

    from k3m.evaluation import EvaluationConfig, run_evaluation
    run_evaluation(EvaluationConfig.load("configs/evaluate_fashion44k.yaml"))
"""
from k3m.evaluation.config import EvaluationConfig
from k3m.evaluation.runner import run_evaluation

__all__ = ["EvaluationConfig", "run_evaluation"]
