"""The performance benchmark of issue 6: `make bench` runs `python -m bench`."""
