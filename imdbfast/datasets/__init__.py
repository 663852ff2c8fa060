"""Datasets with Keras's results: ``imdb`` (the book's reviews), ``reuters`` (newswire topics)
and ``boston_housing`` (house prices)."""

from . import boston_housing, imdb, reuters

__all__ = ["boston_housing", "imdb", "reuters"]
