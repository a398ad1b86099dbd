"""Training side: tf.data input pipeline, model zoo, distribution strategies, training loop, export.

Modules (one job each):

* :mod:`~mnist_batch.training.pipeline` -- arrays -> ``tf.data`` (cache, shuffle, normalise, augment, batch).
* :mod:`~mnist_batch.training.augment` -- random shift / rotation / zoom as pure TF ops.
* :mod:`~mnist_batch.training.zoo` -- the named model builders (``--model NAME``).
* :mod:`~mnist_batch.training.strategy` -- ``--strategy`` -> ``tf.distribute.Strategy``.
* :mod:`~mnist_batch.training.callbacks` -- run directory, resume, checkpoints, history, curves.
* :mod:`~mnist_batch.training.loop` -- the custom loop used under ``MultiWorkerMirroredStrategy``.
* :mod:`~mnist_batch.training.train` -- :func:`train`, tying the above together.
* :mod:`~mnist_batch.training.export` -- ``.keras`` export, test metrics and the model card.
* :mod:`~mnist_batch.training.compat` -- the one reader of a Keras internal (the resume epoch).

This package never imports Apache Beam (a test checks it). TensorFlow is imported by the
submodules, not here, so ``import mnist_batch.training`` stays cheap.
"""
