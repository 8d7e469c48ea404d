"""The shared kit every Ringwise service uses."""
