"""Evaluation: matting metrics (MAD, MSE, Grad, Conn, dtSSD), folder evaluation, synthetic clips with known alpha."""
