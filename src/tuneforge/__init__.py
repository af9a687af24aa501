"""tuneforge: turn pretrained foundation models into specialists for your own domain.

    import tuneforge
    run = tuneforge.train("configs/quickstart.yaml")
    model = tuneforge.load(run.dir)
    model.predict(["a gripping, beautifully acted film"])
"""

from tuneforge.api import load, train

__version__ = "0.1.0"
__all__ = ["load", "train", "__version__"]
