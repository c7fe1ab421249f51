"""Demo model for the batch endpoint emulator: synthetic diamonds, a scikit-learn price model."""
