"""Compute engines for evaluations: plain functions on numpy / pandas, no Django.

Each engine takes a model (:class:`workers.engines.loading.LoadedModel`, or an estimator that
:func:`workers.engines.loading.wrap_estimator` wraps) and data, accepts an optional
``progress(fraction, message)`` callback for long work, and returns a result whose ``as_dict()``
is JSON-safe plain data including Plotly figure specs. Every failure is an
:class:`workers.engines.errors.EngineError` with a machine code and a sentence without data rows.

- ``loading``       load_model: sha256 first, then sklearn (joblib, skops), ONNX, XGBoost, LightGBM
- ``data``          read_table / validate: CSV or Parquet evaluation data, limits and columns
- ``explain``       shap_summary, lime_explanations
- ``fairness``      fairness_report: per-group confusion counts, disparities, bootstrap intervals
- ``performance``   performance_report: classification and regression metrics, slices, figures
- ``robustness``    robustness_report: noise, missing values, out-of-range and malformed inputs
- ``data_quality``  profile / compare: does the evaluation data resemble the training data
- ``figures``       the Plotly JSON builders
- ``environment``   library_versions: what a run records about the libraries it ran with
- ``benchmark``     benchmark: per batch size latency percentiles, throughput, memory and GPU use, on
                    the CPU or the GPU (NVML), stopping when the p95 is stable or the budget is spent

Heavy libraries (shap, lime, fairlearn, onnxruntime, xgboost, lightgbm) are imported inside the
functions that need them, so importing an engine module stays cheap.
"""
