"""Training loops: ExtNet pre-training (public side), RecNet training (cloud side)."""
