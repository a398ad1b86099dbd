"""mnist_batch: train a digit model, then score folders of scanned digits in batch with Apache Beam."""

__version__ = "0.1.0"
