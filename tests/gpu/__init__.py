"""GPU test helpers: a fake NVIDIA host tree and the script that checks a real GPU."""
