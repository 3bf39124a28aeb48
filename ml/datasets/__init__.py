"""Datasets of (encoded graph, metrics): label hygiene, sharded on-disk storage, exports.

Modules, one job each (this package's ``__init__`` imports nothing, so the build's parent process
stays free of torch):

* :mod:`labels` -- failure rules and metric directions; :mod:`records` -- the labelled ``Data``;
* :mod:`source` -- streaming rows/chunks, source hash, build key (no torch);
* :mod:`build` -- ``dataset build``: parallel, resumable, sharded (parent side, no torch);
* :mod:`worker` -- the encoder processes; :mod:`storage` -- shard pack/unpack (safe loading);
* :mod:`atomic` -- temp-file-and-rename writes; :mod:`memory` -- RSS/PSS of the process tree;
* :mod:`reader` -- :class:`~ml.datasets.reader.GraphDataset`;
* :mod:`export` -- the seed's ``data.pt`` layouts; :mod:`show` -- ``dataset show``;
* :mod:`cli` -- the subcommands (``render`` lives in :mod:`ml.render`).
"""
