"""Datasets: ``imdb.load_data`` / ``imdb.get_word_index`` with Keras's results."""

from . import imdb

__all__ = ["imdb"]
