"""Predictor evaluation: ranking metrics, grouped cross-validation, the evolution's trust figure,
reports, reference floors and the nas-bench-graph external benchmark."""
