"""Event video without Django: the ring of recent frames a camera keeps, and the MP4 encoder."""
