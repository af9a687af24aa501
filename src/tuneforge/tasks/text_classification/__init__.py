"""Text classification: ``recipe`` (training), ``model`` (a trained run: predict), ``files`` (predict and
evaluate on files)."""
