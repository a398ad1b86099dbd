"""The in-process engine: a small local ``score`` job run in this process, without importing Beam.

Importing Beam alone takes about twice a hand-written loop's whole run on 20 files (issue 36), so a
job small enough for one process runs here instead: the same launch sequence
(:func:`mnist_batch.scoring.attempt.launch_settings`: checks, leases, recovery), the same listing
(:func:`mnist_batch.scoring.listing.classify_listing`), decoding
(:func:`mnist_batch.scoring.decode_pool.decode_group`), model call (:class:`mnist_batch.models.Predictor`),
rows and statistics (:mod:`mnist_batch.scoring.aggregate`), shards (``runstore``) and commit
(:func:`mnist_batch.scoring.attempt.commit_attempt`): the tables are those of the Beam job.

* :mod:`~mnist_batch.inprocess.engine` -- ``--engine auto|beam|inprocess``: which engine runs a launch, and why;
* :mod:`~mnist_batch.inprocess.job` -- the job itself.

Nothing here imports Beam, directly or through another module (``tests/test_architecture.py``;
``tests/test_inprocess.py`` runs a launch and looks at ``sys.modules``).
"""
