"""The WORM archive: finished recordings from Asterisk into S3 with Object Lock, encrypted."""
