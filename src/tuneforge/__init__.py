"""tuneforge: turn pretrained foundation models into specialists for your own domain.

    import tuneforge
    run = tuneforge.train("configs/quickstart.yaml")
    model = tuneforge.load(run.dir)
    model.predict(["a gripping, beautifully acted film"])
"""

from tuneforge.api import load, train

__version__ = "0.1.0"
__all__ = ["Image", "load", "train", "__version__"]


def __getattr__(name: str):
    # ``tuneforge.Image`` (an image in a Frozen prompt) pulls in torch: imported on first use only.
    if name == "Image":
        from tuneforge.tasks.frozen.model import Image

        return Image
    raise AttributeError(f"module 'tuneforge' has no attribute {name!r}")
