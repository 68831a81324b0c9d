"""Plain data libraries, one subpackage or module per domain, no Lightning: generation, file
formats, pictures and torch datasets. The thin DataModules over them live in ``datamodules``.

- ``mazes``: perfect mazes (generation, shortest paths, encoding, maze files, pictures)
- ``text``: byte corpora (files, flat byte files, splits, windows)
- ``sudoku``: Sudoku boards (exact solver, seeded generator, file formats, augmentation,
  constraint structure, pictures)
- ``images``: CIFAR-10/100 and (Fashion-)MNIST readers (md5, restricted unpickler, IDX)
- ``files``: atomic writes shared by the caches and writers
- ``progress``: count, rate and time left of long data steps, on the package's logger
"""
