"""Owner-side evaluation harnesses: they hold the key, build what an adversary would get, and score attacks."""
