"""What mfd knows of the running kernel: BTF, header trees, tracefs, facts."""

# Answers mfd keeps between runs: BTF offsets per kernel build, joined header trees.
CACHE_DIR = "/var/cache/mfd"
