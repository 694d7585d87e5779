"""Downstream evaluation of K3M and its baselines under missing/noise corruption
(`k3m evaluate`, docs/evaluate.md).

    from k3m.evaluation import EvaluationConfig, evaluate
    evaluate(EvaluationConfig.load("configs/evaluate_fashion44k.yaml"))
"""
from k3m.evaluation.config import EvaluationConfig
from k3m.evaluation.runner import evaluate

__all__ = ["EvaluationConfig", "evaluate"]
