"""`make bench`: the speed of the hot paths, each figure beside a baseline measured in the same
run on the same machine (these machines are shared and noisy: ratios, not absolute numbers,
are what compare across runs). Nothing here is a test; nothing asserts a time."""
