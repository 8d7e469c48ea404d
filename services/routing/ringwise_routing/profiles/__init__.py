"""Users' routing profiles: stored data, the API, and the seam (source.py) call handling
reads them through."""
