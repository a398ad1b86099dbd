"""The run store, without the Beam graph: where a run's tables go, how it is claimed and committed.

* :mod:`~mnist_batch.runstore.layout`: the two layouts (flat folder, runs root) and their paths;
* :mod:`~mnist_batch.runstore.roots`: the output place checked (layout file, version, no mixing);
* :mod:`~mnist_batch.runstore.run_ids`: unique default run ids, checked ids;
* :mod:`~mnist_batch.runstore.claims`: leases against concurrent launches;
* :mod:`~mnist_batch.runstore.commit`: the journaled commit and its recovery;
* :mod:`~mnist_batch.runstore.shards`: Parquet shards written and read back;
* :mod:`~mnist_batch.runstore.history`: committed runs and the key digests of their files;
* :mod:`~mnist_batch.runstore.runs`: reading and cleaning a store (``mnist-batch runs``);
* :mod:`~mnist_batch.runstore.verify`: committed runs' shards checked, bad runs quarantined;
* :mod:`~mnist_batch.runstore.fs`: literal file operations on any Beam filesystem;
* :mod:`~mnist_batch.runstore.s3`: S3's conditional requests (boto3), for atomic leases;
* :mod:`~mnist_batch.runstore.errors`: :class:`RunStoreError`.

Beam is reached only through ``apache_beam.io.filesystems``: monitoring and ``mnist-batch runs``
read a store without importing the scoring graph.
"""
