"""Data files shipped with the package: the bundled MNIST sample and its provenance note."""
