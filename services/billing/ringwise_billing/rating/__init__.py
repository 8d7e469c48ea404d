"""Pure rating: tariffs (versions, prefixes, increments) and the rater. No I/O here."""
