"""Image classification on EfficientNet-Lite: ``recipe`` (training), ``model`` (a trained run: predict),
``files`` (image folders and tables for predict and evaluate)."""
